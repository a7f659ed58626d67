"""The work folder's old files (studio/work_cleanup.py): at a start, a file there older than a week that no
history entry's recipe names is removed; one a recipe names (as its start image, mask or edited image, saved or
still saving, under any spelling of the folder) stays, and so does a new one; without the real history, or when
something goes wrong, nothing is removed and nothing is raised."""

from __future__ import annotations

import json
import logging
import os
import time

import pytest
from PIL import Image

from desktop_app import paths
from desktop_app.studio import work_cleanup
from desktop_app.studio.history import MEMORY, History

DAY = 86400


def work_file(name: str, age_days: float):
    """A canvas copy or mask in the work folder, last written ``age_days`` ago."""
    path = paths.work_dir() / name
    Image.new("RGB", (8, 8), (200, 30, 30)).save(path)
    then = time.time() - age_days * DAY
    os.utime(path, (then, then))
    return path


def saved_entry(history: History, tmp_path, recipe: dict, done: bool = True) -> None:
    image = tmp_path / f"out-{history.count()}.png"
    Image.new("RGB", (8, 8)).save(image)
    entry = history.begin(image, {"prompt": "a red fox", **recipe})
    if done:
        history.commit(entry)


@pytest.fixture
def history(tmp_path):
    history = History(paths.home() / "history.sqlite3")
    yield history
    history.close()


def test_old_unnamed_files_go_and_named_or_new_ones_stay(history, tmp_path):
    start = work_file("canvas-00112233aabbccdd.png", 30)
    mask = work_file("mask-00112233aabbccdd.png", 30)
    edited = work_file("canvas-99887766aabbccdd.png", 30)
    saving = work_file("canvas-5555555555555555.png", 30)
    foreign = work_file("café canvas.png", 30)  # the history's JSON writes it as caf\u00e9
    unnamed = work_file("canvas-ffffffffffffffff.png", 30)
    unnamed_mask = work_file("mask-eeeeeeeeeeeeeeee.png", 8)
    new = work_file("canvas-0000000000000000.png", 1)
    saved_entry(history, tmp_path, {"init_image": str(start), "mask": str(mask), "strength": 0.6})
    # an edit names its input as "image", spelled through a link to the user folder: the name decides
    link = tmp_path / "home-link"
    link.symlink_to(paths.home(), target_is_directory=True)
    saved_entry(history, tmp_path, {"image": str(link / "work" / edited.name), "instruction": "make it blue"})
    saved_entry(history, tmp_path, {"init_image": str(saving)}, done=False)  # a save a crash interrupted
    saved_entry(history, tmp_path, {"init_image": str(foreign)})
    assert "caf\\u00e9" in json.dumps({"init_image": str(foreign)})

    assert work_cleanup.clean(history) == 2
    assert not unnamed.exists() and not unnamed_mask.exists()
    for kept in (start, mask, edited, saving, foreign, new):
        assert kept.is_file(), kept.name
    # a second start finds nothing more to remove
    assert work_cleanup.clean(history) == 0


def test_a_file_whose_entry_was_deleted_goes_at_the_next_start(history, tmp_path):
    start = work_file("canvas-1234123412341234.png", 10)
    saved_entry(history, tmp_path, {"init_image": str(start)})
    assert work_cleanup.clean(history) == 0 and start.is_file()
    history.delete(history.entries()[0].id)
    assert work_cleanup.clean(history) == 1 and not start.exists()


def test_without_the_real_history_nothing_is_removed(tmp_path):
    old = work_file("canvas-abababababababab.png", 30)
    memory = History(MEMORY)
    try:
        assert work_cleanup.clean(memory) == 0
    finally:
        memory.close()
    assert old.is_file()


def test_links_and_folders_are_left_alone(history, tmp_path):
    target = tmp_path / "elsewhere.png"
    Image.new("RGB", (8, 8)).save(target)
    link = paths.work_dir() / "canvas-link.png"
    link.symlink_to(target)
    folder = paths.work_dir() / "old-folder"
    folder.mkdir()
    then = time.time() - 30 * DAY
    for path in (link, folder):
        os.utime(path, (then, then), follow_symlinks=False)
    assert work_cleanup.clean(history) == 0
    assert link.is_symlink() and folder.is_dir() and target.is_file()


def test_a_problem_is_logged_not_raised(tmp_path, caplog):
    old = work_file("canvas-cdcdcdcdcdcdcdcd.png", 30)

    class Broken:
        path = tmp_path / "history.sqlite3"

        def recipe_texts(self):
            raise OSError("disk I/O error")

    with caplog.at_level(logging.WARNING, logger="desktop_app.studio.work_cleanup"):
        assert work_cleanup.clean(Broken()) == 0
    assert old.is_file()
    assert "work folder could not be cleaned" in caplog.text and "disk I/O error" in caplog.text

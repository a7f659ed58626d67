"""The history: survives restarts, stays consistent through a full disk and a SIGKILL mid-save."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from desktop_app.studio import outputs, png_recipe
from desktop_app.studio.history import History

RECIPE = {"prompt": "a red apple", "negative_prompt": "", "width": 16, "height": 16, "steps": 3,
          "guidance_scale": 5.0, "sampler": "Euler", "seed": 7, "model": "default", "model_name": "tiny"}


def keep(history, folder, seed=7, prompt="a red apple", colour="red"):
    return outputs.keep_image(Image.new("RGB", (16, 16), colour), RECIPE | {"prompt": prompt}, seed, folder,
                              history)


def test_history_survives_a_restart(tmp_path):
    db, folder = tmp_path / "history.sqlite3", tmp_path / "out"
    history = History(db)
    first = keep(history, folder, 1, "a red apple")
    second = keep(history, folder, 2, "a green pear", "green")
    history.set_favourite(history.entries()[0].id, True)
    history.close()

    again = History(db)
    assert again._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    entries = again.entries()
    assert [e.path for e in entries] == [second, first], "newest first"
    assert entries[0].favourite and not entries[1].favourite
    assert entries[0].prompt == "a green pear" and entries[0].seed == 2
    assert entries[0].params["prompt"] == "a green pear"
    assert [e.path for e in again.entries(search="apple")] == [first]
    assert [e.path for e in again.entries(search="GREEN pear")] == [second]
    assert [e.path for e in again.entries(favourites_only=True)] == [second]
    assert again.entries(search="100%_") == []
    again.close()


def test_output_files_carry_the_recipe_and_sort_by_time(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    paths = [keep(history, tmp_path / "out", seed) for seed in (5, 6, 7)]
    assert sorted(paths) == paths
    assert paths[0].name.endswith("-s5.png")
    assert png_recipe.read_recipe(paths[2])["request"]["seed"] == 7


def test_a_moved_file_shows_as_missing_and_stays_listed(tmp_path):
    history = History(tmp_path / "h.sqlite3")
    path = keep(history, tmp_path / "out")
    path.rename(tmp_path / "elsewhere.png")
    history.recover([tmp_path / "out"])
    entries = history.entries()
    assert len(entries) == 1 and entries[0].missing and entries[0].state == "done"


@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EACCES])
def test_a_full_disk_leaves_no_file_and_no_row(tmp_path, monkeypatch, error):
    history = History(tmp_path / "h.sqlite3")
    folder = tmp_path / "out"
    keep(history, folder, 1)

    def full_disk(image, handle, info):
        handle.write(b"\x89PNG partial bytes")  # some bytes reached the disk before it filled up
        raise OSError(error, os.strerror(error))

    monkeypatch.setattr(png_recipe, "_write", full_disk)
    with pytest.raises(OSError) as caught:
        keep(history, folder, 2)
    assert caught.value.errno == error
    assert [p.name for p in folder.iterdir()] == [history.entries()[0].path.name], "no partial file"
    assert history.count() == 1, "no row for the image that was not written"


CHILD = textwrap.dedent("""
    import os, sys, time
    from pathlib import Path
    from PIL import Image
    from desktop_app.studio import history as history_module, outputs, png_recipe

    db, folder, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
    history = history_module.History(db)
    real_write, real_commit = png_recipe._write, history.commit
    count = [0]

    def slow_write(image, handle, info):
        count[0] += 1
        if mode == "write" and count[0] == 4:
            handle.write(b"\\x89PNG\\r\\n half an image")
            handle.flush()
            print("MIDSAVE", flush=True)
            time.sleep(60)
        real_write(image, handle, info)

    def slow_commit(entry_id, path=None):
        if mode == "commit" and count[0] == 4:
            print("MIDSAVE", flush=True)  # the file is renamed into place; the row is still "saving"
            time.sleep(60)
        real_commit(entry_id, path)

    png_recipe._write = slow_write
    history.commit = slow_commit
    for seed in range(10):
        recipe = {"prompt": f"image {seed}", "width": 16, "height": 16, "seed": seed}
        outputs.keep_image(Image.new("RGB", (16, 16), (seed * 20, 0, 0)), recipe, seed, folder, history)
        print("SAVED", seed, flush=True)
""")


@pytest.mark.parametrize("mode", ["write", "commit"])
@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_save_leaves_a_consistent_history(tmp_path, mode):
    db, folder = tmp_path / "history.sqlite3", tmp_path / "out"
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, str(script), str(db), str(folder), mode],
                             stdout=subprocess.PIPE, text=True, env=env)
    lines = []
    try:
        for line in child.stdout:
            lines.append(line.strip())
            if line.startswith("MIDSAVE"):
                child.send_signal(signal.SIGKILL)
                break
    finally:
        child.kill()
        child.wait(30)
    assert lines[-1] == "MIDSAVE" and lines.count("MIDSAVE") == 1, lines
    finished = [line for line in lines if line.startswith("SAVED")]
    assert len(finished) == 3

    history = History(db)
    report = history.recover([folder])
    entries = history.entries()
    on_disk = sorted(p for p in folder.iterdir())
    assert not [p for p in on_disk if p.name.startswith(png_recipe.TEMP_PREFIX)], "temp files removed"
    assert history.count("saving") == 0
    assert sorted(e.path for e in entries) == on_disk, "every finished image is listed, nothing else"
    for entry in entries:
        assert not entry.missing
        assert png_recipe.read_recipe(entry.path)["request"]["seed"] == entry.seed
    if mode == "write":
        assert len(entries) == 3 and report["dropped"] == 1 and report["temp_files_removed"] == 1
    else:  # killed after the rename: the image was finished, so it is kept
        assert len(entries) == 4 and report["finished"] == 1

"""The window always starts, and never drops a finished image (issue 14): damaged settings and history fall back
and are reported; a history failure alone costs no image; the input of an upscale is not replaced unasked;
deleting without a trash asks first."""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtWidgets import QFileDialog, QMessageBox

from desktop_app import paths
from desktop_app.studio import png_recipe
from desktop_app.engine.events import Finished
from desktop_app.engine.request import UpscaleRequest
from desktop_app.gui.gallery import GalleryPanel
from desktop_app.studio.history import History

from tests.fake_recipes import upscale_recipe


def run_once(qtbot, window, prompt="a red apple") -> str:
    with qtbot.waitSignal(window.run_ended, timeout=10_000) as blocker:
        window.form.prompt_edit.setPlainText(prompt)
        window.generate_button.click()
    return blocker.args[0]


def outputs_folder() -> Path:
    return paths.home() / "outputs"


def test_a_history_of_random_bytes_is_moved_aside_and_the_window_starts(qtbot, open_fake_window):
    db = paths.home() / "history.sqlite3"
    db.write_bytes(os.urandom(64 * 1024))
    window = open_fake_window()
    assert window.message_area.isVisible() and window.message_area.title.text() == "History was reset"
    broken = list(db.parent.glob("history.sqlite3.broken-*"))
    assert len(broken) == 1 and str(broken[0]) in window.message_area.text.text()
    assert run_once(qtbot, window) == "finished"
    assert window.gallery.list.count() == 1 and len(list(outputs_folder().glob("*.png"))) == 1


@pytest.mark.parametrize("stored,field", [({"output_dir": ["x"]}, "output_dir"), ({"runs": "many"}, "runs"),
                                          ({"output_dir": "\udcff"}, "output_dir"),
                                          ({"geometry": "ünïcode"}, "geometry"),
                                          ({"last_request": [1, 2]}, "last_request")])
def test_settings_of_the_wrong_kind_fall_back_field_by_field(qtbot, open_fake_window, stored, field):
    paths.settings_path().write_text(json.dumps({"theme": "light", **stored}))
    window = open_fake_window()
    assert window.message_area.isVisible() and field in window.message_area.text.text()
    assert window.theme_actions["light"].isChecked(), "the valid fields are kept"
    assert window.output_dir() == outputs_folder()
    assert run_once(qtbot, window) == "finished"
    window.set_theme("system")


def test_settings_nested_100000_deep_are_moved_aside(qtbot, open_fake_window):
    paths.settings_path().write_text('{"last_request": ' + "[" * 100_000 + "]" * 100_000 + "}")
    window = open_fake_window()
    assert window.message_area.title.text() == "Settings were reset"
    assert list(paths.home().glob("settings.json.broken-*"))


def test_damaged_settings_and_history_together(qtbot, open_fake_window):
    paths.settings_path().write_text('{"output_dir": 5}')
    (paths.home() / "history.sqlite3").write_bytes(b"\x00" * 5000)
    window = open_fake_window()
    assert window.message_area.title.text() == "Settings and history were reset"


def test_a_history_that_fails_while_saving_costs_no_image(qtbot, open_fake_window, monkeypatch):
    window = open_fake_window()

    def malformed(*args, **kwargs):
        raise sqlite3.DatabaseError("database disk image is malformed")

    monkeypatch.setattr(window.history, "begin", malformed)
    assert run_once(qtbot, window) == "finished"
    files = list(outputs_folder().glob("*.png"))
    assert len(files) == 1 and png_recipe.read_recipe(files[0])["request"]["prompt"] == "a red apple"
    assert "history not updated" in window.statusBar().currentMessage()
    assert window.message_area.title.text() == "History was reset"
    assert list(paths.home().glob("history.sqlite3.broken-*")), "the damaged database was moved aside"
    assert run_once(qtbot, window, "a second") == "finished", "the new history works"
    assert [e.prompt for e in window.gallery.entries_shown()] == ["a second"]


def test_a_locked_history_is_a_warning(qtbot, open_fake_window, monkeypatch):
    window = open_fake_window()
    monkeypatch.setattr(window.history, "commit",
                        lambda *a, **k: (_ for _ in ()).throw(sqlite3.OperationalError("database is locked")))
    assert run_once(qtbot, window) == "finished"
    assert len(list(outputs_folder().glob("*.png"))) == 1 and not window.message_area.isVisible()
    assert "database is locked" in window.statusBar().currentMessage()


def test_an_image_that_cannot_be_saved_anywhere_holds_the_queue(qtbot, open_fake_window, monkeypatch, tmp_path):
    def full(image, handle, info):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(png_recipe, "_write", full)
    window = open_fake_window()
    window.form.runs_spin.setValue(2)
    assert run_once(qtbot, window) == "finished"
    qtbot.wait(100)
    assert window.queued(), "the second run waits: it would replace the only copy"
    assert "Save As" in window.message_area.text.text() and "queue waits" in window.message_area.text.text()

    monkeypatch.setattr(png_recipe, "_write", lambda image, handle, info: image.save(handle, format="PNG",
                                                                                     pnginfo=info))
    target = tmp_path / "kept.png"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    with qtbot.waitSignal(window.run_ended, timeout=10_000):
        window.save_action.trigger()  # saved: the queue goes on
    assert target.is_file() and not window.queued()


def test_full_output_folder_keeps_a_copy_in_the_fallback_folder(qtbot, open_fake_window, monkeypatch):
    real = png_recipe._write

    def full_in_outputs(image, handle, info):
        if Path(handle.name).parent == outputs_folder():
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(image, handle, info)

    monkeypatch.setattr(png_recipe, "_write", full_in_outputs)
    window = open_fake_window()
    assert run_once(qtbot, window) == "finished"
    kept = list((paths.home() / "unsaved").glob("*.png"))
    assert len(kept) == 1 and str(kept[0].parent) in window.message_area.text.text()
    assert window.canvas.image() is not None and window.save_action.isEnabled()


def test_save_as_asks_before_replacing_the_upscaled_input(qtbot, open_fake_window, monkeypatch, tmp_path):
    window = open_fake_window()
    source = tmp_path / "photo.png"
    Image.new("RGB", (8, 8), "red").save(source)
    before = source.read_bytes()
    big = Image.new("RGB", (32, 32), "blue")
    recipe = upscale_recipe(UpscaleRequest(source=source, model="x"), (8, 8), 4)
    window._result = Finished(images=[big], seeds=[], recipe=recipe)
    window._images = [big]
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "." / "photo.png"), ""))
    asked = []
    monkeypatch.setattr(window, "ask", lambda title, text: asked.append(title) or QMessageBox.StandardButton.No)
    window.save_as()
    assert asked and source.read_bytes() == before, "not replaced without a yes"
    monkeypatch.setattr(window, "ask", lambda title, text: QMessageBox.StandardButton.Yes)
    window.save_as()
    with Image.open(source) as image:
        assert image.size == (32, 32)


def test_deleting_without_a_trash_asks_first(qtbot, open_fake_window, monkeypatch):
    monkeypatch.setattr(GalleryPanel, "trash", staticmethod(lambda path: False))  # no trash on this system
    answers = [False, True]
    monkeypatch.setattr(GalleryPanel, "confirm_delete_for_good",
                        staticmethod(lambda parent, path: answers.pop(0)))
    window = open_fake_window()
    assert run_once(qtbot, window) == "finished"
    gallery = window.gallery
    gallery.select_row(0)
    path = gallery.selected().path
    gallery.delete_button.click()
    assert path.exists() and gallery.list.count() == 1, "kept when the answer is no"
    gallery.select_row(0)
    gallery.delete_button.click()
    assert not path.exists() and gallery.list.count() == 0


def test_a_history_row_with_an_unusable_path_does_not_break_the_gallery(qtbot, open_fake_window):
    history = History(paths.home() / "history.sqlite3")
    entry = history.begin(Path("/tmp/x.png"), {"prompt": "odd"}, 1)
    history._db.execute("UPDATE images SET path=?, state='done' WHERE id=?", ("/tmp/a\x00b.png", entry))
    history.close()
    window = open_fake_window()
    shown = window.gallery.entries_shown()
    assert len(shown) == 1 and shown[0].missing

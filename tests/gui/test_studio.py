"""The studio workflow on the real window: images kept with recipes, gallery, queue, settings, drops."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo
from PySide6.QtWidgets import QFileDialog

from desktop_app import paths
from desktop_app.studio import png_recipe
from desktop_app.gui.gallery import GalleryPanel


def press_generate(window, *prompts: str) -> None:
    """Generate once per prompt, without waiting: the first runs, the others queue behind it."""
    for prompt in prompts:
        window.form.prompt_edit.setPlainText(prompt)
        window.generate_button.click()


def run_once(qtbot, window, prompt="a red apple", timeout=10_000) -> str:
    with qtbot.waitSignal(window.run_ended, timeout=timeout) as blocker:
        press_generate(window, prompt)
    return blocker.args[0]


def record_run_ends(window) -> list[str]:
    """The list that each run's end ("finished", "cancelled", ...) is appended to, in order."""
    ended = []
    window.run_ended.connect(ended.append)
    return ended


def outputs_folder() -> Path:
    return paths.home() / "outputs"


def test_every_image_is_kept_with_its_recipe_and_listed(qtbot, open_fake_window):
    window = open_fake_window()
    window.form.batch_spin.setValue(2)
    window.form.random_check.setChecked(False)
    window.form.seed_spin.setValue(77)
    assert run_once(qtbot, window, "a red apple") == "finished"
    files = sorted(outputs_folder().glob("*.png"))
    assert [f.name.split("-s")[-1] for f in files] == ["77.png", "78.png"]
    assert window.output_dir() == outputs_folder()
    found = png_recipe.read_recipe(files[1])
    assert found["request"]["prompt"] == "a red apple" and found["request"]["seed"] == 78
    with Image.open(files[0]) as image:
        assert png_recipe.DIGITAL_SOURCE_TYPE in image.info.get("xmp", b"").decode() \
            if isinstance(image.info.get("xmp"), bytes) else png_recipe.DIGITAL_SOURCE_TYPE in str(image.info)
    assert window.gallery.list.count() == 2
    assert "saved to" in window.statusBar().currentMessage()


def test_a_full_disk_keeps_the_image_and_save_as_still_works(qtbot, open_fake_window, monkeypatch, tmp_path):
    real_write = png_recipe._write

    def full_disk_in_outputs(image, handle, info):
        if Path(handle.name).parent == outputs_folder():
            handle.write(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(image, handle, info)

    monkeypatch.setattr(png_recipe, "_write", full_disk_in_outputs)
    window = open_fake_window()
    assert run_once(qtbot, window) == "finished"
    assert window.message_area.isVisible()
    assert "No space left on device" in window.message_area.text.text()
    assert "Save As" in window.message_area.text.text()
    assert list(outputs_folder().iterdir()) == [], "no partial file, no temp file"
    assert window.history.entries() == [] and window.gallery.list.count() == 0
    assert window.canvas.image() is not None and len(window._unsaved) == 1

    target = tmp_path / "elsewhere" / "kept.png"
    target.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), "PNG image (*.png)"))
    window.save_action.trigger()
    assert png_recipe.read_recipe(target)["request"]["prompt"] == "a red apple"


def test_dropping_our_png_fills_the_form(qtbot, open_fake_window, drop, tmp_path):
    recipe = {"prompt": "a blue whale", "negative_prompt": "text", "width": 48, "height": 40, "steps": 7,
              "guidance_scale": 3.5, "sampler": "Euler a", "seed": 99, "batch_size": 3, "model": "default",
              "seeds": [99, 100, 101], "format": png_recipe.RECIPE_FORMAT}
    path = png_recipe.save_png(Image.new("RGB", (48, 40)), tmp_path / "whale.png", recipe, seed=100)
    window = open_fake_window()
    assert drop(window, path)
    form = window.form
    assert form.prompt_edit.toPlainText() == "a blue whale"
    assert form.negative_edit.toPlainText() == "text"
    assert (form.width_spin.value(), form.height_spin.value(), form.steps_spin.value()) == (48, 40, 7)
    assert form.guidance_spin.value() == 3.5 and form.sampler_combo.currentText() == "Euler a"
    assert not form.random_check.isChecked() and form.seed_spin.value() == 100
    assert form.batch_spin.value() == 1
    assert "whale.png" in window.statusBar().currentMessage()


def test_dropping_an_automatic1111_png_fills_the_form(qtbot, open_fake_window, drop, tmp_path):
    info = PngInfo()
    info.add_text("parameters", "a castle on a hill\nNegative prompt: fog\nSteps: 30, Sampler: DPM++ 2M, "
                                "Schedule type: Karras, CFG scale: 7, Seed: 31337, Size: 64x64, "
                                "Model hash: 6ce0161689, Model: v1-5")
    path = tmp_path / "castle.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    window = open_fake_window()
    drop(window, path)
    form = window.form
    assert form.prompt_edit.toPlainText() == "a castle on a hill"
    assert form.negative_edit.toPlainText() == "fog"
    assert form.steps_spin.value() == 30 and form.seed_spin.value() == 31337
    assert form.sampler_combo.currentText() == "DPM++ 2M Karras"
    assert form.model() == "default", "an unknown model name leaves the model choice alone"


def test_dropping_an_image_without_recipe_says_so(qtbot, open_fake_window, drop, tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    window = open_fake_window()
    window.form.prompt_edit.setPlainText("unchanged")
    drop(window, path)
    assert window.message_area.isVisible() and "no recipe" in window.message_area.text.text()
    assert window.form.prompt_edit.toPlainText() == "unchanged"
    text = tmp_path / "notes.txt"
    text.write_text("x")
    assert not drop(window, text), "only image files are accepted"


def test_the_queue_runs_every_job_and_cancel_stops_only_the_current(qtbot, open_fake_window, make_engine):
    engine = make_engine(delay=0.05)
    window = open_fake_window(engine=engine)
    window.form.steps_spin.setValue(40)
    ended = record_run_ends(window)
    press_generate(window, "first", "second", "third", "fourth")
    assert window.is_running()
    assert [r.prompt for r in window.queued()] == ["second", "third", "fourth"]
    assert window.queue_panel.isVisible() and window.queue_panel.list.count() == 3

    window.queue_panel.list.setCurrentRow(1)
    window.queue_panel.remove_button.click()  # "third" goes
    assert [r.prompt for r in window.queued()] == ["second", "fourth"]

    qtbot.waitUntil(lambda: engine.started.is_set(), timeout=10_000)
    window.cancel_button.click()  # cancels "first" only
    qtbot.waitUntil(lambda: len(ended) == 3, timeout=30_000)
    assert ended == ["cancelled", "finished", "finished"]
    assert engine.runs == 3
    prompts = [e.prompt for e in window.history.entries()]
    assert prompts == ["fourth", "second"], "the cancelled job kept nothing; the next ones all ran"
    assert not window.is_running() and not window.queue_panel.isVisible()


def test_clear_empties_the_queue_and_the_current_job_finishes(qtbot, open_fake_window, make_engine):
    engine = make_engine(delay=0.02)
    window = open_fake_window(engine=engine)
    window.form.steps_spin.setValue(20)
    ended = record_run_ends(window)
    press_generate(window, "one", "two", "three")
    window.queue_panel.clear_button.click()
    assert window.queued() == []
    qtbot.waitUntil(lambda: ended == ["finished"], timeout=30_000)
    qtbot.wait(100)
    assert engine.runs == 1


def test_runs_times_batch_records_increasing_seeds(qtbot, open_fake_window):
    window = open_fake_window()
    window.form.random_check.setChecked(False)
    window.form.seed_spin.setValue(10)
    window.form.batch_spin.setValue(2)
    window.form.runs_spin.setValue(3)
    ended = record_run_ends(window)
    press_generate(window, "seeds")
    qtbot.waitUntil(lambda: len(ended) == 3, timeout=30_000)
    assert sorted(e.seed for e in window.history.entries()) == [10, 11, 12, 13, 14, 15]


def test_gallery_search_favourite_delete_missing_and_restart(qtbot, open_fake_window, monkeypatch):
    trashed = []
    monkeypatch.setattr(GalleryPanel, "trash", staticmethod(lambda path: trashed.append(path) or
                                                            path.unlink() is None))
    opened = []
    monkeypatch.setattr(GalleryPanel, "opener", staticmethod(opened.append))
    window = open_fake_window()
    for prompt in ("a red apple", "a green pear", "a red car"):
        assert run_once(qtbot, window, prompt) == "finished"
    gallery = window.gallery
    assert [e.prompt for e in gallery.entries_shown()] == ["a red car", "a green pear", "a red apple"]
    gallery.search_edit.setText("red")
    assert [e.prompt for e in gallery.entries_shown()] == ["a red car", "a red apple"]
    gallery.search_edit.clear()

    gallery.select_row(1)
    gallery.favourite_button.click()
    gallery.favourites_check.setChecked(True)
    assert [e.prompt for e in gallery.entries_shown()] == ["a green pear"]
    gallery.favourites_check.setChecked(False)

    car = gallery.entries_shown()[0]
    car.path.rename(car.path.with_name("moved-away.png"))  # the user moved it
    gallery.refresh()
    assert "(missing)" in gallery.list.item(0).text()

    gallery.select_row(2)
    apple = gallery.selected()
    gallery.delete_button.click()
    assert trashed == [apple.path] and not apple.path.exists()
    gallery.select_row(0)
    gallery.folder_button.click()
    assert opened == [car.path.parent]
    window.close()

    again = open_fake_window()  # a restart: the same history, the favourite, the missing file still listed
    shown = again.gallery.entries_shown()
    assert [e.prompt for e in shown] == ["a red car", "a green pear"]
    assert shown[0].missing and shown[1].favourite


def test_settings_persist_and_a_broken_file_is_reported_once(qtbot, open_fake_window):
    settings_file = paths.settings_path()
    settings_file.write_text("{ this is not json")
    window = open_fake_window()
    assert window.message_area.isVisible() and window.message_area.title.text() == "Settings were reset"
    assert list(settings_file.parent.glob("settings.json.broken-*"))
    window.form.steps_spin.setValue(9)
    window.form.runs_spin.setValue(2)
    assert run_once(qtbot, window, "remember me") in ("finished",)
    qtbot.waitUntil(lambda: not window.is_running() and not window.queued(), timeout=10_000)
    qtbot.wait(200)
    window.set_theme("light")
    window.close()
    stored = json.loads(settings_file.read_text())
    assert stored["last_request"]["prompt"] == "remember me" and stored["theme"] == "light"

    again = open_fake_window()
    assert not again.message_area.isVisible(), "told once"
    assert again.form.prompt_edit.toPlainText() == "remember me"
    assert again.form.steps_spin.value() == 9 and again.form.runs_spin.value() == 2
    assert again.theme_actions["light"].isChecked()
    again.set_theme("system")


def test_shortcuts_show_in_tooltips(qtbot, open_fake_window):
    window = open_fake_window()
    assert "Ctrl+Enter" in window.generate_button.toolTip()
    assert "Ctrl+S" in window.save_action.toolTip()
    assert "Ctrl+H" in window.gallery_action.toolTip()

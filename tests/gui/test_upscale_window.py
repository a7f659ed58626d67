"""File → Upscale an Image…: the job runs in its own worker thread, shows per-tile progress, the result
lands on the canvas, Save As keeps it, Esc cancels between tiles, a bad file gets a readable message."""

from __future__ import annotations

import hashlib
import json

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog

from desktop_app.engine.request import DEFAULT_TILE, UpscaleRequest
from desktop_app.errors import RequestError


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    Image.new("RGB", (24, 16), (30, 160, 90)).save(path)
    return path


def choose(monkeypatch, path):
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(path), ""))


def test_upscale_an_image_from_the_file_menu_and_save_it(qtbot, open_window, make_engine, monkeypatch, photo,
                                                         tmp_path):
    fake = make_engine(tiles=4)  # conftest's FakeEngine: its upscale keeps the real contract
    window = open_window(engine_factory=lambda device: fake)
    file_menu = window.menuBar().actions()[0].menu()
    assert window.upscale_action in file_menu.actions()
    labels = []
    window.frame_shown.connect(lambda step, total: labels.append(window.step_label.text()))
    choose(monkeypatch, photo)
    with qtbot.waitSignal(window.run_ended, timeout=10_000) as blocker:
        window.upscale_action.trigger()
        assert window.is_running() and not window.upscale_action.isEnabled()
    assert blocker.args == ["finished"], window.message_area.text.text()

    assert [label.split(" · ")[0] for label in labels] == ["Tile 1/4", "Tile 2/4", "Tile 3/4", "Tile 4/4"]
    image = window.canvas.image()
    assert (image.width(), image.height()) == (96, 64)
    assert window.stage_strip.state("upscale") == "done"
    assert window.stage_strip.state("denoise") == "skipped" and window.stage_strip.state("text") == "skipped"
    assert window.step_label.text().startswith("Upscaled")
    assert "photo.png" in window.statusBar().currentMessage()
    job = fake.requests[0]
    assert isinstance(job, UpscaleRequest) and job.source == str(photo) and job.model == "default"
    assert job.tile == DEFAULT_TILE and job.model_folder, "the form's model folder names the default upscaler"
    assert window.save_action.isEnabled() and window.upscale_action.isEnabled()

    target = tmp_path / "saved.png"
    offered = []

    def save_dialog(parent, title, start, *rest):
        offered.append(start)
        return str(target), "PNG image (*.png)"

    monkeypatch.setattr(QFileDialog, "getSaveFileName", save_dialog)
    qtbot.keyClick(window, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert offered and offered[0].endswith("photo-x4.png")
    with Image.open(target) as saved:
        assert saved.size == (96, 64)
        assert json.loads(saved.text["recipe"])["job"] == "upscale"
        assert saved.text["parameters"].startswith("Postprocess upscale by: 4, Postprocess upscaler: default")


def test_escape_cancels_an_upscale_between_tiles(qtbot, open_window, make_engine, monkeypatch, photo):
    fake = make_engine(tiles=50, delay=0.05)
    window = open_window(engine_factory=lambda device: fake)
    choose(monkeypatch, photo)
    with qtbot.waitSignal(window.frame_shown, timeout=10_000):
        window.upscale_action.trigger()
    with qtbot.waitSignal(window.run_ended, timeout=10_000) as blocker:
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert blocker.args == ["cancelled"]
    assert fake.tiles_done < 50 and not window.is_running()
    assert window.statusBar().currentMessage() == "Cancelled"


def test_a_file_that_is_not_an_image_gets_a_readable_message(qtbot, open_window, make_engine, monkeypatch,
                                                             tmp_path):
    error = RequestError("input", "notes.png is not an image this app can read")
    window = open_window(engine_factory=lambda device: make_engine(error=error))
    choose(monkeypatch, tmp_path / "notes.png")
    with qtbot.waitSignal(window.run_ended, timeout=10_000) as blocker:
        window.upscale_action.trigger()
    assert blocker.args == ["failed"]
    assert window.message_area.isVisible()
    assert "not an image" in window.message_area.text.text()
    assert window.upscale_action.isEnabled()


def test_the_real_engine_upscales_with_the_models_own_upscaler(qtbot, open_window, tiny_model_dir, photo):
    window = open_window(model=str(tiny_model_dir), device="cpu")
    with qtbot.waitSignal(window.run_ended, timeout=120_000) as blocker:
        assert window.upscale_file(photo)
    assert blocker.args == ["finished"], window.message_area.text.text()
    image = window.canvas.image()
    assert (image.width(), image.height()) == (96, 64)
    recipe = window._result.recipe
    own = tiny_model_dir / "upscaler" / "model.safetensors"
    assert recipe.upscaler["sha256"] == hashlib.sha256(own.read_bytes()).hexdigest()[:10]
    assert recipe.job == "upscale" and recipe.scale == 4 and recipe.input == str(photo)


def test_a_bad_option_is_refused_before_any_worker_starts(qtbot, open_window, make_engine, photo):
    fake = make_engine()
    window = open_window(engine_factory=lambda device: fake)
    assert not window.upscale_file(photo, scale=99)
    assert window.message_area.isVisible() and window.message_area.title.text() == "Check the settings"
    assert "Scale: must be a number from 1" in window.message_area.text.text()
    assert not window.is_running() and fake.requests == []


# ---- the generation form: which upscaler, and the hires fix --------------------------------------------


def test_the_form_offers_the_upscalers_folder_and_builds_the_request(qtbot, open_window, tiny_model_dir,
                                                                     tiny_sd_dir, make_engine):
    import shutil

    from desktop_app import paths

    mine = paths.upscalers_dir() / "4x-mine.safetensors"
    shutil.copy(tiny_model_dir / "upscaler" / "model.safetensors", mine)
    window = open_window(model=str(tiny_model_dir), engine_factory=lambda device: make_engine())
    form = window.form
    form.prompt_edit.setPlainText("a cat")
    names = [form.upscaler_combo.itemText(i) for i in range(form.upscaler_combo.count())]
    assert names[0] == "Model's own" and "4x-mine" in names and names[-1] == "Browse file…"
    assert form.upscale_check.isChecked() and form.build_request().upscale == "default"
    assert not form.hires_spin.isEnabled()  # the embedded format draws at one size

    form.select_model(str(tiny_sd_dir))  # no upscaler of its own: the file is offered instead
    assert form.upscaler() == str(mine) and form.upscale_check.isEnabled()
    assert not form.upscale_check.isChecked()
    assert form.hires_spin.isEnabled() and form.hires_spin.text() == "Off"
    assert form.build_request().hires_scale is None
    form.hires_spin.setValue(2.0)
    form.hires_strength_spin.setValue(0.35)
    form.upscale_check.setChecked(True)
    request = form.build_request()
    assert (request.hires_scale, request.hires_strength, request.upscale) == (2.0, 0.35, str(mine))

    form.apply_request({"hires_scale": None, "hires_strength": 0.6, "upscale": "default"})
    assert form.build_request().hires_scale is None and form.hires_strength_spin.value() == 0.6

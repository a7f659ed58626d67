"""The main window, driven as a person would: type, press keys, watch the canvas, read the status bar."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFileDialog, QLabel

import desktop_app
from desktop_app.errors import RequestError
from desktop_app.gui import model_info
from desktop_app.gui.canvas import ImageCanvas
from desktop_app.gui.main_window import MainWindow
from desktop_app.gui.stage_strip import parse_tokens
from desktop_app.gui.workers import live_threads


def press_generate(qtbot, window, prompt="a smiling cat face"):
    window.form.prompt_edit.setFocus()
    qtbot.keyClicks(window.form.prompt_edit, prompt)
    qtbot.keyClick(window.form.prompt_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)


def count_frames(window) -> list:
    frames = []
    window.frame_shown.connect(lambda step, total: frames.append(step))
    return frames


def generate_and_wait(qtbot, window, prompt="a smiling cat face", timeout=10_000) -> str:
    """Type a prompt, press Ctrl+Enter, wait until the run ends; returns how it ended."""
    with qtbot.waitSignal(window.run_ended, timeout=timeout) as blocker:
        press_generate(qtbot, window, prompt)
    return blocker.args[0]


# ---- with the tiny real model --------------------------------------------------------------------


def test_generate_with_the_tiny_model(qtbot, open_window, tiny_model_dir):
    from desktop_app.engine.generate import Engine

    # a preview every step (the app paces them by their cost: on a busy machine a tiny model's step can be
    # cheaper than its preview, and the pacer then skips some; this test counts what the canvas shows)
    window = open_window(model=str(tiny_model_dir),
                         engine_factory=lambda device: Engine(device, preview_share=None))
    window.form.upscale_check.setChecked(False)
    window.form.steps_spin.setValue(5)
    frames = count_frames(window)
    canvas_images = []
    window.canvas.image_changed.connect(lambda: canvas_images.append(window.canvas.image()))

    with qtbot.waitSignal(window.run_ended, timeout=180_000) as blocker:
        press_generate(qtbot, window)
        assert window.is_running(), "Ctrl+Enter while typing in the prompt box starts a run"
        assert window.generate_button.text() == "Add to queue" and window.cancel_button.isEnabled()
    assert blocker.args == ["finished"], window.message_area.text.text()

    assert frames == [1, 2, 3, 4, 5]
    previews = canvas_images[:-1]
    assert len(previews) == 5, "each preview frame is shown on the canvas"
    assert len({bytes(image.constBits()) for image in previews}) > 1, "the previews change over the steps"
    final = window.canvas.image()
    size = (window.form.width_spin.value(), window.form.height_spin.value())
    assert (final.width(), final.height()) == size
    assert window.canvas.is_crisp() == (max(size) <= 128)
    assert window.progress_bar.value() == window.progress_bar.maximum() == 5
    assert "Device: cpu" in window.device_label.text()
    assert window.time_label.text().endswith(" s")
    assert window.statusBar().currentMessage().startswith("Done in")
    assert window.stage_strip.state("denoise") == "done"
    assert window.stage_strip.state("upscale") == "skipped"
    assert window.form.seed_spin.value() == window._result.seeds[0], "the random seed used is shown"
    assert window.save_action.isEnabled()


def test_escape_cancels_a_running_generation(qtbot, open_window, tiny_model_dir):
    window = open_window(model=str(tiny_model_dir))
    window.form.upscale_check.setChecked(False)
    window.form.steps_spin.setValue(150)
    frames = count_frames(window)
    with qtbot.waitSignal(window.frame_shown, timeout=180_000):
        press_generate(qtbot, window)
    with qtbot.waitSignal(window.run_ended, timeout=30_000) as blocker:
        qtbot.keyClick(window.form.prompt_edit, Qt.Key.Key_Escape)
        assert window.step_label.text() == "Cancelling…"
    assert blocker.args == ["cancelled"]
    assert len(frames) < 150
    assert not window.is_running()
    assert window.generate_button.isEnabled()
    assert window.statusBar().currentMessage() == "Cancelled"


def test_closing_during_a_generation_leaves_no_thread(qtbot, open_window, tiny_model_dir):
    window = open_window(model=str(tiny_model_dir))
    window.form.steps_spin.setValue(150)
    with qtbot.waitSignal(window.frame_shown, timeout=180_000):
        press_generate(qtbot, window)
    assert window.is_running()
    window.close()
    assert not live_threads()


def test_a_missing_model_folder_shows_a_readable_message(qtbot, open_window, tmp_path):
    missing = tmp_path / "not-a-model"
    missing.mkdir()
    window = open_window(model=str(missing))
    assert generate_and_wait(qtbot, window, timeout=180_000) == "failed"
    assert window.message_area.isVisible()
    assert window.message_area.title.text() == "Model problem"
    text = window.message_area.text.text()
    assert "not-a-model" in text and "Traceback" not in text
    assert "Model problem" in window.statusBar().currentMessage()
    assert window.generate_button.isEnabled()


# ---- with a fake engine (fast, and able to fail on demand) ------------------------------------------


def test_tokens_and_stages_are_shown(qtbot, open_window, make_engine):
    window = open_window(engine_factory=lambda device: make_engine())
    assert generate_and_wait(qtbot, window) == "finished"
    assert window.stage_strip.tokens() == ["a</w>", "cat</w>"]
    assert "a&lt;/w&gt;" in window.stage_strip.tokens_label.text()
    assert window.stage_strip.state("upscale") == "done"
    assert window.canvas.image().width() == 256 and not window.canvas.is_crisp()


def test_internal_error_is_readable_and_the_window_recovers(qtbot, open_window, make_engine):
    engine = make_engine(error=KeyError("unet"))
    window = open_window(engine_factory=lambda device: engine)
    assert generate_and_wait(qtbot, window) == "failed"
    text = window.message_area.text.text()
    assert window.message_area.title.text() == "Unexpected error"
    assert "KeyError" in text and "Traceback" not in text
    assert window.stage_strip.state("denoise") == "failed"
    engine.error = None
    with qtbot.waitSignal(window.run_ended, timeout=10_000) as blocker:
        window.generate_button.click()
    assert blocker.args == ["finished"]
    assert not window.message_area.isVisible()


def test_a_request_error_from_the_engine_names_the_field(qtbot, open_window, make_engine):
    window = open_window(engine_factory=lambda device: make_engine(
        error=RequestError("guidance_scale", "must be at most 20 for this model")))
    assert generate_and_wait(qtbot, window) == "failed"
    assert window.message_area.text.text() == "Guidance: must be at most 20 for this model"
    assert window.form.guidance_spin.property("invalid")


def test_a_too_long_prompt_is_refused_before_the_engine(qtbot, open_window, make_engine):
    engine = make_engine()
    window = open_window(engine_factory=lambda device: engine)
    window.form.prompt_edit.setPlainText("cat " * 600)
    window.generate_button.click()
    assert not window.is_running() and engine.runs == 0
    assert window.message_area.text.text().startswith("Prompt: is 2399 characters")


def test_batch_shows_thumbnails_and_a_click_views_one(qtbot, open_window, make_engine):
    window = open_window(engine_factory=lambda device: make_engine())
    window.form.batch_spin.setValue(3)
    window.form.upscale_check.setChecked(False)
    window.form.random_check.setChecked(False)
    window.form.seed_spin.setValue(40)
    assert generate_and_wait(qtbot, window) == "finished"
    assert window.thumbnails.isVisible() and window.thumbnails.count() == 3
    first = window.canvas.image().pixelColor(0, 0)
    rect = window.thumbnails.visualItemRect(window.thumbnails.item(2))
    qtbot.mouseClick(window.thumbnails.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert window.canvas.image().pixelColor(0, 0) != first
    assert window.form.seed_spin.value() == 40
    assert "seed 40, 41, 42" in window.statusBar().currentMessage()


def test_save_as_writes_a_png_with_the_recipe(qtbot, open_window, make_engine, tmp_path, monkeypatch):
    window = open_window(engine_factory=lambda device: make_engine())
    assert generate_and_wait(qtbot, window, "a red apple") == "finished"
    target = tmp_path / "out" / "apple"
    target.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *args, **kwargs: (str(target), "PNG image (*.png)"))
    qtbot.keyClick(window, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    saved = target.with_suffix(".png")
    assert saved.exists()
    with Image.open(saved) as image:
        assert image.size == (256, 256)
        # the form starts on the embedded model's own defaults (its model_index.json)
        guidance = float(_default_model_defaults()["guidance_scale"])
        assert image.text["parameters"].startswith(
            f"a red apple\nSteps: 20, Sampler: DPM++ 2M, CFG scale: {guidance}, Seed: 1234")
        assert json.loads(image.text["recipe"])["prompt"] == "a red apple"
    assert str(saved) in window.statusBar().currentMessage()


def test_the_form_constrains_values(qtbot, open_window, make_engine):
    window = open_window(engine_factory=lambda device: make_engine())
    form = window.form
    form.width_spin.selectAll()
    qtbot.keyClicks(form.width_spin, "61")
    form.width_spin.interpretText()
    form.width_spin.clearFocus()
    qtbot.keyClick(form.width_spin, Qt.Key.Key_Tab)
    assert form.width_spin.value() % 8 == 0
    form.steps_spin.setValue(1000)
    assert form.steps_spin.value() == 150
    form.guidance_spin.setValue(99)
    assert form.guidance_spin.value() == 30
    assert form.sampler_combo.currentText() == "DPM++ 2M"
    assert form.seed_spin.maximum() == 2**32 - 1 and not form.seed_spin.isEnabled()
    form.random_check.setChecked(False)
    form.seed_spin.setValue(2**32 - 1)
    assert form.build_request().seed == 2**32 - 1


def test_browse_for_a_model_folder(qtbot, open_window, make_engine, tmp_path, monkeypatch):
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps(
        {"_defaults": {"width": 96, "height": 48, "steps": 12},
         "_limits": {"min_size": 32, "max_size": 128}}))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(folder))
    window = open_window(engine_factory=lambda device: make_engine())
    combo = window.form.model_combo
    browse = combo.findData("__browse__")
    combo.setCurrentIndex(browse)
    combo.activated.emit(browse)
    assert window.form.model() == str(folder)
    assert combo.currentText() == "my-model"
    assert (window.form.width_spin.value(), window.form.height_spin.value()) == (96, 48)
    assert window.form.width_spin.maximum() == 128
    assert window.form.build_request().model == str(folder)
    assert "my-model" in window.model_label.text()


def test_about_shows_only_the_attributions_section(qtbot, open_window, make_engine, tmp_path, monkeypatch):
    card = tmp_path / "resources" / "models" / "emoji-mini" / "MODEL_CARD.md"
    card.parent.mkdir(parents=True)
    card.write_text("# emoji-mini\n\n## Parts\n- a VAE\n\n## Attributions\n- Twemoji graphics: CC-BY 4.0\n"
                    "- Noto Emoji: Apache License 2.0\n\n## Recipe\nrun build.py\n")
    monkeypatch.setenv("DESKTOP_APP_RESOURCES", str(tmp_path / "resources"))
    window = open_window(engine_factory=lambda device: make_engine())
    window.about_action.trigger()
    text = window._about.attributions.toPlainText()
    assert "Twemoji graphics: CC-BY 4.0" in text and "Noto Emoji" in text
    assert "VAE" not in text and "build.py" not in text


def test_about_shows_version_and_attributions(qtbot, open_window, make_engine):
    window = open_window(engine_factory=lambda device: make_engine())
    window.about_action.trigger()
    dialog = window._about
    qtbot.waitExposed(dialog)
    assert desktop_app.__version__ in dialog.findChild(QLabel, "about_title").text()
    text = dialog.attributions.toPlainText()
    card = model_info.default_model_dir() / "MODEL_CARD.md"
    if card.exists():
        assert "Twemoji" in text or text.strip() in card.read_text()
    else:
        assert "Model card not found" in text


def test_main_opens_the_window_with_model_and_device(qtbot, tiny_model_dir):
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from desktop_app.gui import app

    seen = {}

    def look_then_close():
        windows = [w for w in QApplication.topLevelWidgets() if isinstance(w, MainWindow) and w.isVisible()]
        if len(windows) != 1 or "cpu" not in windows[0].device_label.text():
            QTimer.singleShot(100, look_then_close)  # warm-up (torch import) still running
            return
        window = windows[0]
        seen.update(model=window.form.model(), device=window.device_label.text(), worker=window.worker.device)
        window.close()

    def give_up():  # never hang the suite: close whatever is open after a minute
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, MainWindow):
                widget.close()

    QTimer.singleShot(100, look_then_close)
    QTimer.singleShot(60_000, give_up)
    assert app.main(["--model", str(tiny_model_dir), "--device", "cpu"]) == 0
    assert seen == {"model": str(tiny_model_dir), "device": "Device: cpu (float32)", "worker": "cpu"}


# ---- widgets on their own ----------------------------------------------------------------------


def test_small_images_are_scaled_by_whole_pixels(qtbot):
    canvas = ImageCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(700, 500)
    canvas.set_image(Image.new("RGB", (64, 64), "red"))
    rect = canvas.target_rect()
    assert canvas.is_crisp() and rect.width() == 64 * 7 and rect.height() == 64 * 7
    canvas.set_image(Image.new("RGB", (512, 512), "red"))
    assert not canvas.is_crisp() and canvas.target_rect().height() == 500 - 32


@pytest.mark.parametrize(("detail", "tokens"), [
    ('["a</w>", "cat</w>"]', ["a</w>", "cat</w>"]),
    ("tokens: a | smiling | cat", ["a", "smiling", "cat"]),
    ("a smiling cat", ["a", "smiling", "cat"]),
    ("", []),
])
def test_token_details_are_parsed(detail, tokens):
    assert parse_tokens(detail) == tokens


def _default_model_defaults() -> dict:
    from desktop_app.models import model_folder
    from desktop_app.resources import default_model_dir

    return model_folder.defaults(model_folder.read_index(default_model_dir()))


def test_the_progress_is_named_by_its_stage(qtbot, open_window, make_engine):
    """Each Progress carries its stage: the window names steps, hires steps and tiles from it alone."""
    from desktop_app.engine.events import Progress

    class Hires(make_engine):
        def _generate(self, request, emit, cancel):
            result = super()._generate(request, emit, cancel)
            for step in (1, 2):  # no StageStarted("hires") first: the Progress alone says what it counts
                emit(Progress(step, 2, None, 1.0 + step, stage="hires"))
            return result

    window = open_window(engine_factory=lambda device: Hires())
    window.form.steps_spin.setValue(2)
    labels = []
    window.frame_shown.connect(lambda step, total: labels.append(window.step_label.text().split(" · ")[0]))
    assert generate_and_wait(qtbot, window) == "finished"
    assert labels == ["Step 1/2", "Step 2/2", "Hires step 1/2", "Hires step 2/2"]


def test_the_menus_are_in_their_places(qtbot, open_window, make_engine):
    window = open_window(engine_factory=lambda device: make_engine())

    def texts(menu):
        return [action.text() for action in menu.actions()]

    assert [action.text() for action in window.menuBar().actions()] == ["&File", "&Image", "&Models", "&View",
                                                                         "&Help"]
    assert texts(window.menus.models_menu) == ["&Components…"]
    assert texts(window.menus.file_menu) == ["Open as S&tart Image…", "Open &Mask…", "", "&Upscale an Image…",
                                             "&Save As…", "", "Open &Output Folder", "Choose Output &Folder…", "",
                                             "&Quit"]
    assert texts(window.menus.image_menu) == ["&Generate", "&Cancel", "Use as S&tart Image",
                                              "&Edit with an Instruction…", "", "Export &Timeline…"]
    assert texts(window.menus.view_menu) == ["&Gallery", "&Models", "&Explain…", "&Theme", "&Fine-tune"]

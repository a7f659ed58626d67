"""Image → Edit with an Instruction… (issue 17): the dialog offers the library's edit models; Edit runs the edit in
the worker thread with progress, the result lands on the canvas and is kept in the output folder and the history
with its recipe (job "edit"); an image in no file is written to a PNG first; Esc cancels; an empty instruction or a
model that cannot edit is refused in one line before anything runs; the real engine edits on a tiny FLUX.1
Kontext."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage
from tiny_edit_models import build_edit_model

from desktop_app.engine.edit_request import EditRequest
from desktop_app.models import model_library

SIZE = (80, 64)  # multiples of 16, at least 64 a side


@pytest.fixture(scope="module")
def kontext(tmp_path_factory):
    """A tiny random FLUX.1 Kontext diffusers folder (its model_index.json names FluxKontextPipeline)."""
    return build_edit_model("flux-kontext", tmp_path_factory.mktemp("edit-models") / "tiny-kontext")


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    pixels = np.random.default_rng(3).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def pixels(image) -> np.ndarray:
    if isinstance(image, QImage):
        image = image.convertToFormat(QImage.Format.Format_RGB888)
        row = image.bytesPerLine()
        data = np.frombuffer(bytes(image.constBits()), np.uint8).reshape(image.height(), row)
        return data[:, : image.width() * 3].reshape(image.height(), image.width(), 3).astype(np.int16)
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def generate(qtbot, window):
    with qtbot.waitSignal(window.run_ended, timeout=20_000) as ended:
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    assert ended.args == ["finished"]


def open_edit(window):
    """Image → Edit with an Instruction…, as a person picks it from the menu: the dialog it opened."""
    image_menu = window.menus.image_menu
    assert window.menus.edit_action in image_menu.actions()
    assert window.menus.edit_action.isEnabled()
    window.menus.edit_action.trigger()
    dialog = window.edit_wiring.dialog
    assert dialog is not None and dialog.isVisible()
    return dialog


def test_edit_the_canvas_image_from_the_image_menu(qtbot, open_fake_window, make_engine, kontext):
    model_library.add(kontext, name="kontext-tiny")
    engine = make_engine()
    window = open_fake_window(engine)
    assert not window.menus.edit_action.isEnabled()  # nothing on the canvas, no start image
    generate(qtbot, window)
    kept = window.controller.kept_files[0]
    before = pixels(window.canvas.image())

    dialog = open_edit(window)
    labels = [dialog.model_combo.itemText(i) for i in range(dialog.model_combo.count())]
    assert labels == ["kontext-tiny (FLUX.1 Kontext)", "Browse…"]
    shown = window.canvas.image()
    assert f"the image on the canvas ({shown.width()}×{shown.height()})" in dialog.source_label.text()
    qtbot.keyClicks(dialog.instruction_edit, "make it night")
    steps = []
    window.frame_shown.connect(lambda step, total: steps.append((step, total)))
    with qtbot.waitSignal(window.run_ended, timeout=20_000) as ended:
        qtbot.mouseClick(dialog.edit_button, Qt.MouseButton.LeftButton)
        assert window.is_running() and not window.menus.edit_action.isEnabled()
    assert ended.args == ["finished"], window.message_area.text.text()
    assert not dialog.isVisible()

    request = engine.requests[-1]
    assert isinstance(request, EditRequest) and request.instruction == "make it night"
    assert request.image == str(kept) and request.model == str(kontext)
    assert steps == [(step, 8) for step in range(1, 9)]
    assert np.array_equal(pixels(window.canvas.image()), 255 - before)  # the fake inverts: the result is shown
    assert window.step_label.text().startswith("Edited")
    assert window.save_action.isEnabled() and window.menus.edit_action.isEnabled()

    files = window.controller.kept_files
    assert len(files) == 1 and files[0] != kept and files[0].parent == window.output_dir()
    with Image.open(files[0]) as saved:
        assert np.array_equal(pixels(saved), 255 - before)
        recipe = json.loads(saved.text["recipe"])
    assert recipe["job"] == "edit" and recipe["instruction"] == "make it night"
    assert recipe["image"] == str(kept) and recipe["image_sha256"] == hashlib.sha256(kept.read_bytes()).hexdigest()
    assert recipe["seed"] == request.seed
    entry = window.history.entries()[0]
    assert entry.path == files[0] and entry.prompt == "make it night"
    assert "saved to" in window.statusBar().currentMessage()
    again = open_edit(window)  # the next edit starts from the last one's instruction and model
    assert again.instruction_edit.text() == "make it night" and again.model_combo.currentIndex() == 0
    again.reject()


def test_an_image_in_no_file_is_written_to_a_png_first(qtbot, open_fake_window, make_engine, kontext):
    engine = make_engine()
    window = open_fake_window(engine, model=str(kontext))  # the form's model is offered first when it edits
    shown = QImage(72, 64, QImage.Format.Format_RGB888)
    shown.fill(Qt.GlobalColor.darkCyan)
    window.canvas.set_image(shown, "a preview")
    dialog = open_edit(window)
    assert dialog.model_combo.itemText(0) == "tiny-kontext (FLUX.1 Kontext)"
    dialog.instruction_edit.setText("add snow")
    with qtbot.waitSignal(window.run_ended, timeout=20_000) as ended:
        qtbot.mouseClick(dialog.edit_button, Qt.MouseButton.LeftButton)
    assert ended.args == ["finished"]
    written = engine.requests[-1].image
    assert written.endswith(".png")
    with Image.open(written) as image:
        assert image.size == (72, 64) and np.array_equal(pixels(image), pixels(shown))


def test_the_start_image_is_edited_when_the_canvas_is_empty(qtbot, open_fake_window, make_engine, kontext, photo):
    engine = make_engine()
    window = open_fake_window(engine)
    assert window.form.start_box.set_image(photo)
    assert window.menus.edit_action.isEnabled()
    with qtbot.waitSignal(window.run_ended, timeout=20_000) as ended:
        assert window.edit_wiring.start("make it night", str(kontext), seed=7) is None
    assert ended.args == ["finished"]
    assert engine.requests[-1].image == str(photo) and engine.requests[-1].seed == 7
    assert (window.canvas.image().width(), window.canvas.image().height()) == SIZE


def test_escape_cancels_an_edit(qtbot, open_fake_window, make_engine, kontext, photo):
    engine = make_engine(delay=0.05)
    window = open_fake_window(engine)
    window.form.start_box.set_image(photo)
    with qtbot.waitSignal(window.frame_shown, timeout=10_000):
        assert window.edit_wiring.start("make it night", str(kontext)) is None
    engine.delay = 0.2
    with qtbot.waitSignal(window.run_ended, timeout=10_000) as ended:
        qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert ended.args == ["cancelled"]
    assert engine.steps_done < 8 and not window.is_running()
    assert window.statusBar().currentMessage() == "Cancelled"
    assert window.controller.kept_files == [] and window.history.entries() == []
    assert window.menus.edit_action.isEnabled()


def test_bad_input_is_refused_in_one_line_before_anything_runs(qtbot, open_fake_window, make_engine, kontext,
                                                                tiny_model_dir, photo):
    engine = make_engine()
    window = open_fake_window(engine)
    window.form.start_box.set_image(photo)
    dialog = open_edit(window)
    assert dialog.none_label.isVisible() and dialog.model_combo.count() == 1  # no edit model in the library

    dialog.browse = lambda parent: str(kontext)  # Browse… to the edit model, then an empty instruction
    dialog.model_combo.activated.emit(0)
    assert dialog.model() == str(kontext)
    qtbot.mouseClick(dialog.edit_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible() and dialog.note.isVisible()
    assert dialog.note.text().startswith("Instruction: is empty")

    dialog.browse = lambda parent: str(tiny_model_dir)  # a model of the embedded format: it cannot edit
    dialog.model_combo.activated.emit(dialog.model_combo.count() - 1)
    assert dialog.model() == str(tiny_model_dir)
    dialog.instruction_edit.setText("make it night")
    qtbot.mouseClick(dialog.edit_button, Qt.MouseButton.LeftButton)
    line = dialog.note.text()
    assert dialog.isVisible() and "cannot edit an image by an instruction" in line and "FLUX.1 Kontext" in line
    assert "\n" not in line and "Traceback" not in line
    assert window.statusBar().currentMessage() == line
    assert engine.requests == [] and not window.is_running()


def test_the_real_engine_edits_on_a_tiny_kontext(qtbot, open_window, kontext, photo):
    window = open_window(device="cpu")
    window.form.start_box.set_image(photo)
    with qtbot.waitSignal(window.run_ended, timeout=300_000) as ended:
        assert window.edit_wiring.start("make it night", str(kontext), seed=5) is None
    assert ended.args == ["finished"], window.message_area.text.text()
    image = window.canvas.image()
    assert (image.width(), image.height()) == SIZE
    recipe = window._result.recipe
    assert recipe.job == "edit" and recipe.family == "flux" and recipe.pipeline == "FluxKontextPipeline"
    with Image.open(window.controller.kept_files[0]) as saved:
        kept = json.loads(saved.text["recipe"])
    assert kept["job"] == "edit" and kept["image"] == str(photo) and kept["seed"] == 5
    assert kept["image_sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()


def test_a_failure_in_the_engine_is_one_readable_line(qtbot, open_fake_window, make_engine, kontext, photo):
    from desktop_app.errors import ModelError

    says = "tiny-kontext has no Qwen-Image-Edit processor (processor/)"
    window = open_fake_window(make_engine(error=ModelError(says)))
    window.form.start_box.set_image(photo)
    with qtbot.waitSignal(window.run_ended, timeout=10_000) as ended:
        assert window.edit_wiring.start("make it night", str(kontext)) is None
    assert ended.args == ["failed"]
    assert window.message_area.isVisible() and window.message_area.text.text() == says
    assert "Traceback" not in window.statusBar().currentMessage()
    assert window.controller.kept_files == [] and window.menus.edit_action.isEnabled()

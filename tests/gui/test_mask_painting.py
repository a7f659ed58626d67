"""Painting the inpainting mask on the canvas with the mouse (issue 17): the strokes become a black-and-white PNG
(white = repaint) that Generate sends with its feather; undo, redo, invert and clear; the eraser and the right
button erase; another image on the canvas ends the painting. One run through the real engine on a tiny Stable
Diffusion model keeps every pixel outside the mask."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import QPoint, Qt
from tiny_families import build_family

SIZE = 64


def picture(path, size=SIZE):
    x, y = np.meshgrid(np.linspace(0, 255, size), np.linspace(0, 255, size))
    Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8)).save(path)
    return path


def at(canvas, x: float, y: float) -> QPoint:
    """The canvas widget's position of image pixel (x, y)'s centre."""
    rect = canvas.target_rect()
    image = canvas.image()
    return QPoint(round(rect.x() + (x + 0.5) * rect.width() / image.width()),
                  round(rect.y() + (y + 0.5) * rect.height() / image.height()))


def stroke(qtbot, canvas, points, button=Qt.MouseButton.LeftButton) -> None:
    qtbot.mousePress(canvas, button, pos=at(canvas, *points[0]))
    for point in points[1:]:
        qtbot.mouseMove(canvas, at(canvas, *point))
    qtbot.mouseRelease(canvas, button, pos=at(canvas, *points[-1]))


@pytest.fixture
def painting(qtbot, open_fake_window, make_engine, tmp_path):
    """(window, engine, layer): a start image set and Paint mask pressed, a 6-pixel brush."""
    engine = make_engine()
    window = open_fake_window(engine)
    box = window.form.start_box
    box.set_image(picture(tmp_path / "start.png"))
    qtbot.mouseClick(box.paint_button, Qt.MouseButton.LeftButton)
    assert window.canvas.painting() and window.start_image.tools.isVisible()
    window.start_image.tools.size_spin.setValue(6)
    return window, engine, box.layer


def test_a_painted_stroke_is_white_and_the_rest_black(qtbot, painting):
    window, engine, layer = painting
    stroke(qtbot, window.canvas, [(10, 20), (30, 20), (50, 20)])
    mask = layer.pixels()
    assert set(np.unique(mask)) == {0, 255}  # no grey: the feather does the softening
    assert (mask[18:23, 10:51] == 255).all()  # along the stroke, within the brush's radius
    assert (mask[:14] == 0).all() and (mask[27:] == 0).all() and (mask[:, :6] == 0).all()
    window.form.start_box.mask_blur_spin.setValue(6)
    with qtbot.waitSignal(window.run_ended, timeout=20_000):
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    request = engine.requests[-1]
    assert request.mask is not None and request.mask_blur == 6
    sent = np.asarray(Image.open(request.mask))
    assert sent.shape == (SIZE, SIZE) and (sent == mask).all()
    assert not window.canvas.painting()  # a run ends the painting; the mask stays for the next one
    assert window.form.build_request().mask == request.mask  # the same mask: the same file


def test_undo_redo_invert_and_clear(qtbot, painting):
    window, _, layer = painting
    tools = window.start_image.tools
    assert not tools.undo_button.isEnabled()
    stroke(qtbot, window.canvas, [(10, 10), (20, 10)])
    first = layer.pixels()
    stroke(qtbot, window.canvas, [(10, 40), (40, 40)])
    second = layer.pixels()
    assert second[40, 30] == 255 and first[40, 30] == 0
    qtbot.mouseClick(tools.undo_button, Qt.MouseButton.LeftButton)
    assert (layer.pixels() == first).all()
    qtbot.mouseClick(tools.redo_button, Qt.MouseButton.LeftButton)
    assert (layer.pixels() == second).all()
    qtbot.mouseClick(tools.invert_button, Qt.MouseButton.LeftButton)
    assert (layer.pixels() == 255 - second).all()
    qtbot.mouseClick(tools.clear_button, Qt.MouseButton.LeftButton)
    assert not layer.pixels().any()
    assert window.form.build_request().mask is None  # nothing to repaint: plain image to image
    qtbot.mouseClick(tools.undo_button, Qt.MouseButton.LeftButton)
    assert (layer.pixels() == 255 - second).all()


def test_the_eraser_and_the_right_button_erase(qtbot, painting):
    window, _, layer = painting
    tools = window.start_image.tools
    stroke(qtbot, window.canvas, [(5, 30), (58, 30)])
    assert layer.pixels()[30, 20] == 255 and layer.pixels()[30, 45] == 255
    stroke(qtbot, window.canvas, [(20, 20), (20, 40)], Qt.MouseButton.RightButton)
    assert layer.pixels()[30, 20] == 0 and layer.pixels()[30, 45] == 255
    qtbot.mouseClick(tools.eraser_button, Qt.MouseButton.LeftButton)
    stroke(qtbot, window.canvas, [(45, 20), (45, 40)])
    assert layer.pixels()[30, 45] == 0 and layer.pixels()[30, 10] == 255


def test_a_mask_file_is_loaded_and_another_image_ends_the_painting(qtbot, painting, tmp_path):
    window, _, layer = painting
    given = Image.new("L", (2 * SIZE, 2 * SIZE), 0)  # drawn at another size: scaled to the start image
    given.paste(255, (0, 0, SIZE, 2 * SIZE))
    given.save(tmp_path / "half.png")
    assert window.form.start_box.load_mask(tmp_path / "half.png")
    mask = layer.pixels()
    assert (mask[:, :SIZE // 2 - 1] == 255).all() and (mask[:, SIZE // 2 + 1:] == 0).all()
    window.canvas.set_image(Image.new("RGB", (16, 16)))  # e.g. a gallery image
    assert not window.canvas.painting() and not window.form.start_box.paint_button.isChecked()
    assert not window.start_image.tools.isVisible()
    assert layer.pixels().any()  # the mask is kept


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    return build_family("sd1", tmp_path_factory.mktemp("families") / "tiny-sd1")


def test_inpainting_through_the_window_keeps_the_outside(qtbot, open_window, tiny_sd, tmp_path):
    from desktop_app.engine.generate import Engine

    window = open_window(engine_factory=lambda device: Engine(device="cpu"))
    form = window.form
    form.select_model(str(tiny_sd))
    form.width_spin.setValue(32)
    form.height_spin.setValue(32)
    form.steps_spin.setValue(4)
    form.random_check.setChecked(False)
    form.seed_spin.setValue(5)
    form.upscale_check.setChecked(False)
    form.prompt_edit.setPlainText("a red square")
    start = picture(tmp_path / "start.png", 32)
    box = form.start_box
    box.set_image(start)
    box.strength_spin.setValue(1.0)
    box.mask_blur_spin.setValue(2)
    qtbot.mouseClick(box.paint_button, Qt.MouseButton.LeftButton)
    window.start_image.tools.size_spin.setValue(4)
    stroke(qtbot, window.canvas, [(10, 12), (20, 12)])
    mask = box.layer.pixels()
    with qtbot.waitSignal(window.run_ended, timeout=120_000) as ended:
        window.generate()
    assert ended.args == ["finished"], window.statusBar().currentMessage()
    result = np.asarray(window._result.images[0].convert("RGB"), dtype=np.int16)
    before = np.asarray(Image.open(start).convert("RGB"), dtype=np.int16)
    change = np.abs(result - before).max(axis=-1)
    near = np.zeros_like(mask, bool)  # the painted area grown by the 2-pixel feather
    ys, xs = np.nonzero(mask)
    near[max(0, ys.min() - 2):ys.max() + 3, max(0, xs.min() - 2):xs.max() + 3] = True
    assert change[~near].max() <= 1  # outside the mask and its feather: the start image's pixels
    assert change[mask > 0].mean() > 10  # inside: repainted
    assert window._result.recipe.to_dict()["mask_sha256"]

"""The start image box's Extend row (issue 17, outpainting): the borders go with Generate as the request's
``outpaint``, the form's size grows by them, the strength goes to 1 while extending, the mask is not painted (nor
sent) then, and a recipe that outpainted restores its borders without growing the size again."""

from __future__ import annotations

import pytest
from PIL import Image
from PySide6.QtCore import QPointF, Qt

from desktop_app.engine.request import GenerationRequest
from desktop_app.studio import png_recipe

from tests.fake_recipes import generation_recipe
from tests.gui.test_start_image import generate, model_folder, picture


def test_extending_sends_outpaint_and_grows_the_size(qtbot, open_fake_window, make_engine, tmp_path):
    engine = make_engine()
    window = open_fake_window(engine)
    form, box = window.form, window.form.start_box
    start = picture(tmp_path / "photo.png", (64, 64))
    assert box.set_image(start)
    box.strength_spin.setValue(0.4)
    assert (form.width_spin.value(), form.height_spin.value()) == (64, 64)
    box.extend.spins["left"].setValue(16)
    box.extend.spins["bottom"].setValue(8)
    assert (form.width_spin.value(), form.height_spin.value()) == (80, 72)
    assert box.strength_spin.value() == 1.0  # the new area is drawn from noise
    assert "64×64, used as it is, extended to 80×72" in box.info_label.text()
    assert not box.paint_button.isEnabled() and "while extending" in box.paint_button.toolTip()
    assert box.mask_label.text().startswith("Extending: the new area is drawn")
    generate(qtbot, window)
    request = engine.requests[-1]
    assert request.outpaint == (16, 0, 0, 8) and (request.width, request.height) == (80, 72)
    assert request.init_image == str(start) and request.strength == 1.0 and request.mask is None
    assert request.outpaint_area() == (16, 0, 64, 64)  # the start image at its own size
    qtbot.mouseClick(box.extend.reset_button, Qt.MouseButton.LeftButton)
    assert (form.width_spin.value(), form.height_spin.value()) == (64, 64)
    assert box.strength_spin.value() == pytest.approx(0.4) and box.paint_button.isEnabled()
    generate(qtbot, window)
    assert engine.requests[-1].outpaint is None and engine.requests[-1].strength == 0.4


def test_the_quick_button_adds_64_on_every_side(qtbot, open_fake_window, make_engine, tmp_path):
    engine = make_engine()
    window = open_fake_window(engine)
    box = window.form.start_box
    box.set_image(picture(tmp_path / "photo.png", (64, 64)))
    qtbot.waitUntil(lambda: box.extend.quick_button.height() > 10)  # laid out once the settings show
    qtbot.mouseClick(box.extend.quick_button, Qt.MouseButton.LeftButton)
    assert box.extend.value() == (64, 64, 64, 64)
    generate(qtbot, window)
    request = engine.requests[-1]
    assert request.outpaint == (64, 64, 64, 64) and (request.width, request.height) == (192, 192)


def test_a_painted_mask_is_kept_but_not_sent_while_extending(qtbot, open_fake_window, make_engine, tmp_path):
    engine = make_engine()
    window = open_fake_window(engine)
    box = window.form.start_box
    box.set_image(picture(tmp_path / "photo.png", (64, 64)))
    box.layer.begin_stroke(QPointF(20, 20))
    box.layer.stroke_to(QPointF(40, 40))
    box.layer.end_stroke()
    assert not box.layer.is_empty()
    box.paint_button.setChecked(True)
    box.extend.spins["right"].setValue(32)
    assert not box.paint_button.isChecked()  # painting ends when extending starts
    request = window.form.build_request()
    assert request.outpaint == (0, 0, 32, 0) and request.mask is None
    box.extend.spins["right"].setValue(0)
    assert window.form.build_request().mask is not None  # the mask was kept


def test_a_family_without_inpainting_cannot_extend(qtbot, open_fake_window, tmp_path):
    window = open_fake_window()
    box = window.form.start_box
    box.set_image(picture(tmp_path / "photo.png"))
    box.extend.spins["top"].setValue(16)
    window.form.select_model(str(model_folder(tmp_path, "sdxl-refiner")))
    assert box.isEnabled() and not box.extend.isEnabled()  # image to image, but no inpaint pipeline
    assert "Outpainting is not available for SDXL refiner models" in box.extend.toolTip()
    request = window.form.build_request()
    assert request.init_image is not None and request.outpaint is None


def test_a_dropped_recipe_restores_its_borders_without_growing_the_size(qtbot, open_fake_window, drop, tmp_path):
    start = picture(tmp_path / "start.png", (64, 64))
    request = GenerationRequest(prompt="a fox", seed=7, width=96, height=80, init_image=str(start), strength=0.9,
                                outpaint=(16, 0, 16, 16), mask_blur=6)
    png_recipe.save_png(Image.new("RGB", (96, 80)), tmp_path / "made.png",
                        generation_recipe(request, [7]).to_dict(), 7)
    window = open_fake_window()
    assert drop(window, tmp_path / "made.png")
    form, box = window.form, window.form.start_box
    assert box.extend.value() == (16, 0, 16, 16) and box.strength_spin.value() == pytest.approx(0.9)
    assert (form.width_spin.value(), form.height_spin.value()) == (96, 80)
    again = form.build_request()
    assert (again.outpaint, again.width, again.height, again.mask_blur) == ((16, 0, 16, 16), 96, 80, 6)
    assert again.init_image == str(start) and again.strength == 0.9

"""The window's start image (issue 17): set from a file, a drop on its box or the canvas; Generate sends it with
its strength and fit; a family diffusers cannot run image to image for disables the box, naming the family; a
recipe that started from an image restores it, or says in one line which file is gone."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt

from desktop_app.engine.request import GenerationRequest
from desktop_app.models import families
from desktop_app.studio import png_recipe

from tests.fake_recipes import generation_recipe


def picture(path, size=(48, 32)):
    """A start image whose pixels are not all alike."""
    x, y = np.meshgrid(np.linspace(0, 255, size[0]), np.linspace(0, 255, size[1]))
    Image.fromarray(np.stack([x, y, 255 - x], -1).astype(np.uint8)).save(path)
    return path


def model_folder(root, family: str):
    """A diffusers folder of ``family`` as the form reads it (model_index.json names the pipeline)."""
    folder = root / family
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": families.FAMILIES[family].pipelines[0]}))
    return folder


def generate(qtbot, window):
    with qtbot.waitSignal(window.run_ended, timeout=20_000) as ended:
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    assert ended.args == ["finished"]


def test_a_start_image_and_its_strength_go_with_generate(qtbot, open_fake_window, make_engine, tmp_path):
    engine = make_engine()
    window = open_fake_window(engine)
    box = window.form.start_box
    assert not box.settings.isVisible()  # nothing set: text to image, no strength to show
    generate(qtbot, window)
    assert engine.requests[-1].init_image is None
    start = picture(tmp_path / "photo.png")
    assert box.set_image(start)
    assert box.settings.isVisible() and "48×32, cropped to 64×64" in box.info_label.text()
    box.strength_slider.setValue(35)
    assert box.strength_spin.value() == pytest.approx(0.35)
    box.fit_combo.setCurrentIndex(box.fit_combo.findData("stretch"))
    assert "resized to 64×64" in box.info_label.text()
    generate(qtbot, window)
    request = engine.requests[-1]
    assert request.init_image == str(start) and request.strength == 0.35 and request.init_fit == "stretch"
    assert request.mask is None  # nothing painted: image to image
    qtbot.mouseClick(box.clear_button, Qt.MouseButton.LeftButton)
    generate(qtbot, window)
    assert engine.requests[-1].init_image is None and not box.settings.isVisible()


def test_dropping_an_image_on_the_box_sets_it_and_a_bad_file_is_one_line(qtbot, open_fake_window, drop, tmp_path):
    window = open_fake_window()
    box = window.form.start_box
    start = picture(tmp_path / "dropped.png")
    assert drop(box, start)
    assert box.path() == start and window.form.build_request().init_image == str(start)
    assert window.form.prompt_edit.toPlainText() == ""  # a drop on the box is not a recipe to restore
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    assert not box.set_image(broken)
    message = window.statusBar().currentMessage()
    assert "broken.png cannot be read as an image" in message and "\n" not in message
    assert box.path() == start  # unchanged


def test_the_image_on_the_canvas_becomes_the_start_image(qtbot, open_fake_window, make_engine):
    engine = make_engine()
    window = open_fake_window(engine)
    assert not window.menus.use_start_action.isEnabled()  # nothing on the canvas yet
    generate(qtbot, window)
    kept = window.controller.kept_files[0]
    assert window.menus.use_start_action.isEnabled()
    window.menus.use_start_action.trigger()
    box = window.form.start_box
    assert box.path() == kept  # the result as it was saved, with its recipe
    window.form.prompt_edit.setPlainText("again")
    generate(qtbot, window)
    assert engine.requests[-1].init_image == str(kept)
    window.canvas.set_image(Image.new("RGB", (16, 16), (1, 2, 3)))  # a picture that is in no file
    qtbot.mouseClick(box.canvas_button, Qt.MouseButton.LeftButton)
    assert box.path() != kept and box.path().is_file()
    assert Image.open(box.path()).convert("RGB").getpixel((5, 5)) == (1, 2, 3)


@pytest.mark.parametrize("family", ["sana", "pixart-sigma", "flux2"])
def test_a_family_without_image_to_image_disables_the_box(qtbot, open_fake_window, tmp_path, family):
    window = open_fake_window()
    form, box = window.form, window.form.start_box
    start = picture(tmp_path / "start.png")
    box.set_image(start)
    form.select_model(str(model_folder(tmp_path, family)))
    assert not box.isEnabled()
    assert families.FAMILIES[family].name in box.toolTip() and "not available" in box.toolTip()
    assert form.build_request().init_image is None  # kept, not sent
    form.select_model("default")  # the embedded model runs it with Stable Diffusion's pipelines
    assert box.isEnabled() and box.paint_button.isEnabled()
    assert form.build_request().init_image == str(start)


def test_flux2_klein_has_inpainting_and_so_image_to_image(qtbot, open_fake_window, tmp_path):
    window = open_fake_window()
    box = window.form.start_box
    box.set_image(picture(tmp_path / "start.png"))
    window.form.select_model(str(model_folder(tmp_path, "flux2-klein")))
    assert box.isEnabled() and box.paint_button.isEnabled()


def recipe_png(path, **fields) -> None:
    request = GenerationRequest(prompt="a fox", seed=7, **fields)
    png_recipe.save_png(Image.new("RGB", (64, 64)), path, generation_recipe(request, [7]).to_dict(), 7)


def test_a_dropped_recipe_restores_its_start_image_and_mask(qtbot, open_fake_window, drop, tmp_path):
    start = picture(tmp_path / "start.png", (64, 64))
    mask = tmp_path / "mask.png"
    painted = Image.new("L", (64, 64), 0)
    painted.paste(255, (8, 8, 24, 24))
    painted.save(mask)
    recipe_png(tmp_path / "made.png", init_image=str(start), strength=0.45, mask=str(mask), mask_blur=7,
               init_fit="stretch")
    window = open_fake_window()
    assert drop(window, tmp_path / "made.png")
    box = window.form.start_box
    assert box.path() == start and box.strength_spin.value() == pytest.approx(0.45)
    assert box.mask_blur_spin.value() == 7 and box.fit_combo.currentData() == "stretch"
    assert (box.layer.pixels() == np.asarray(painted)).all()
    request = window.form.build_request()
    assert request.init_image == str(start) and request.mask_blur == 7
    assert (np.asarray(Image.open(request.mask)) == np.asarray(painted)).all()
    assert "not available" not in window.statusBar().currentMessage()


def test_a_recipe_whose_start_image_is_gone_says_so_in_one_line(qtbot, open_fake_window, drop, tmp_path):
    start = picture(tmp_path / "gone.png")
    recipe_png(tmp_path / "made.png", init_image=str(start), strength=0.5)
    start.unlink()
    window = open_fake_window()
    window.form.start_box.set_image(picture(tmp_path / "other.png"))
    assert drop(window, tmp_path / "made.png")
    message = window.statusBar().currentMessage()
    assert f"start image {start}" in message and "\n" not in message
    assert window.form.prompt_edit.toPlainText() == "a fox"  # the rest of the recipe is restored
    assert window.form.start_box.path() is None  # not left on an unrelated start image
    recipe_png(tmp_path / "plain.png")  # a text-to-image recipe: no start image
    window.form.start_box.set_image(picture(tmp_path / "other.png"))
    assert drop(window, tmp_path / "plain.png")
    assert window.form.start_box.path() is None and "start image" not in window.statusBar().currentMessage()


def test_a_recipe_whose_mask_is_gone_keeps_the_start_image_and_names_the_mask(qtbot, open_fake_window, drop,
                                                                               tmp_path):
    start = picture(tmp_path / "start.png", (64, 64))
    mask = tmp_path / "mask.png"
    Image.new("L", (64, 64), 255).save(mask)
    recipe_png(tmp_path / "made.png", init_image=str(start), mask=str(mask))
    mask.unlink()
    window = open_fake_window()
    assert drop(window, tmp_path / "made.png")
    message = window.statusBar().currentMessage()
    assert f"mask {mask}" in message and "start image" not in message
    assert window.form.start_box.path() == start and window.form.build_request().mask is None


def test_an_upscaled_canvas_becomes_the_start_image_not_the_file_it_came_from(qtbot, open_fake_window,
                                                                            make_engine, monkeypatch, tmp_path):
    from PySide6.QtWidgets import QFileDialog

    window = open_fake_window(make_engine(tiles=1))
    generate(qtbot, window)
    kept = window.controller.kept_files[0]
    photo = picture(tmp_path / "photo.png", (24, 16))
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *args, **kwargs: (str(photo), ""))
    with qtbot.waitSignal(window.run_ended, timeout=10_000) as ended:
        window.upscale_action.trigger()
    assert ended.args == ["finished"]
    window.menus.use_start_action.trigger()
    chosen = window.form.start_box.path()
    assert chosen != kept and chosen.is_file()
    assert Image.open(chosen).size == (96, 64), "the upscaled image on the canvas, as it is shown"

"""The form's ControlNet section (issue 17): empty by default; a row added (a folder of <models>/controlnet/ or
one browsed to, an image opened, weight, start, end, preprocessor) goes with Generate as the request's
controls, Remove takes it out; off (with a tooltip) for a family without ControlNets, on with a start image for
the SD families and off with one for Flux.1; a dropped recipe restores its rows (and its start image) and names
the folders and images missing here in one line; a refused ControlNet is named beside the section; and with the
real engine on a tiny SD model the row changes the picture."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from PySide6.QtCore import Qt
from safetensors.numpy import save_file

from desktop_app.engine.request import ControlChoice, GenerationRequest
from desktop_app.gui.control_rows import START_IMAGE_LINE, ControlRow
from desktop_app.models import controlnet_folder, families
from desktop_app.studio import png_recipe

from tests.fake_recipes import generation_recipe

# the embedded default model's UNet (what a ControlNet for it must share), and SD 1.x's width
EMBEDDED_UNET = {"cross_attention_dim": 384, "block_out_channels": [64, 128, 256], "addition_embed_type": "text"}
SD1_UNET = {"cross_attention_dim": 768, "block_out_channels": [32, 64], "addition_embed_type": None}


def fake_controlnet(name: str, unet: dict = EMBEDDED_UNET):
    """A ControlNet folder as the app reads it without torch (config and a safetensors header)."""
    folder = controlnet_folder.controlnets_dir() / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps({"_class_name": "ControlNetModel", **unet}))
    weights = folder / "diffusion_pytorch_model.safetensors"
    save_file({"conv_in.weight": np.zeros((4, 4), np.float32)}, str(weights))
    return folder


def picture(path, size=(48, 32)):
    """An image with edges (a bright square on a dark ground)."""
    pixels = np.full((size[1], size[0], 3), 20, np.uint8)
    pixels[8:24, 8:24] = (230, 200, 40)
    Image.fromarray(pixels).save(path)
    return path


def model_folder(root, family: str):
    folder = root / family
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": families.FAMILIES[family].pipelines[0]}))
    return folder


def add_row(qtbot, form, monkeypatch, folder_name: str, image, **values) -> ControlRow:
    """What a person does: Add ControlNet, pick the folder, Open… the image, set the numbers."""
    qtbot.mouseClick(form.control_rows.add_button, Qt.MouseButton.LeftButton)
    row = form.control_rows.rows[-1]
    index = row.folder_combo.findText(folder_name)
    assert index >= 0, [row.folder_combo.itemText(i) for i in range(row.folder_combo.count())]
    row.folder_combo.setCurrentIndex(index)
    monkeypatch.setattr(ControlRow, "image_dialog", staticmethod(lambda parent: str(image)))
    qtbot.mouseClick(row.image_button, Qt.MouseButton.LeftButton)
    for key, spin in (("weight", row.weight_spin), ("start", row.start_spin), ("end", row.end_spin)):
        if key in values:
            spin.setValue(values[key])
    if "preprocessor" in values:
        row.preprocessor_combo.setCurrentText(values["preprocessor"])
    return row


def generate(qtbot, window):
    with qtbot.waitSignal(window.run_ended, timeout=20_000) as ended:
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    return ended.args[0]


def test_a_row_goes_with_generate_and_remove_takes_it_out(qtbot, open_fake_window, make_engine, tmp_path,
                                                          monkeypatch):
    fake_controlnet("edges")
    fake_controlnet("depth")
    image = picture(tmp_path / "edges.png")
    engine = make_engine()
    window = open_fake_window(engine)
    rows = window.form.control_rows
    assert rows.rows == [] and rows.add_button.isEnabled()  # empty by default
    assert generate(qtbot, window) == "finished" and engine.requests[-1].controls == ()
    first = add_row(qtbot, window.form, monkeypatch, "edges", image, weight=0.7, start=0.1, end=0.8,
                    preprocessor="canny")
    assert not first.thumb.pixmap().isNull()  # the Canny preview
    edges = first.thumb.pixmap().toImage()
    assert len({edges.pixelColor(x, y).name() for x in range(edges.width()) for y in range(edges.height())}) > 1
    add_row(qtbot, window.form, monkeypatch, "depth", image, weight=1.5)
    assert generate(qtbot, window) == "finished"
    assert engine.requests[-1].controls == (
        ControlChoice("edges", str(image), 0.7, 0.1, 0.8, "canny"),
        ControlChoice("depth", str(image), 1.5, 0.0, 1.0, "none"))
    qtbot.mouseClick(first.remove_button, Qt.MouseButton.LeftButton)
    assert len(rows.rows) == 1
    assert generate(qtbot, window) == "finished"
    assert [c.model for c in engine.requests[-1].controls] == ["depth"]


def test_a_browsed_folder_is_offered_and_sent_by_its_path(qtbot, open_fake_window, make_engine, tmp_path,
                                                          monkeypatch):
    folder = fake_controlnet("elsewhere")
    moved = tmp_path / "my-control"
    folder.rename(moved)
    engine = make_engine()
    window = open_fake_window(engine)
    row = window.form.control_rows.add_row()
    monkeypatch.setattr(ControlRow, "folder_dialog", staticmethod(lambda parent: str(moved)))
    browse = row.folder_combo.findText("Browse…")
    row.folder_combo.setCurrentIndex(browse)
    row.folder_combo.activated.emit(browse)
    row.set_image(str(picture(tmp_path / "p.png")))
    assert row.folder_combo.currentText() == "my-control"
    assert generate(qtbot, window) == "finished"
    assert engine.requests[-1].controls[0].model == str(moved)


def test_a_row_without_an_image_or_for_another_family_is_named_beside_the_section(qtbot, open_fake_window,
                                                                                   make_engine, tmp_path,
                                                                                   monkeypatch):
    fake_controlnet("sd15-edges", SD1_UNET)
    fake_controlnet("edges")
    engine = make_engine()
    window = open_fake_window(engine)
    rows = window.form.control_rows
    row = rows.add_row()
    row.folder_combo.setCurrentIndex(row.folder_combo.findText("edges"))
    window.generate()
    assert "needs its image" in rows.note.text() and rows.note.isVisible()
    assert "ControlNet" in window.statusBar().currentMessage() and engine.runs == 0
    rows.remove_row(row)
    add_row(qtbot, window.form, monkeypatch, "sd15-edges", picture(tmp_path / "p.png"))
    window.generate()
    note = rows.note.text()
    assert "is for Stable Diffusion 1.x" in note and "\n" not in note and engine.runs == 0
    # a ControlNet problem the engine finds is shown beside the section too
    window.form.mark_field("controls", "controls: ControlNet x is for SDXL; the model y is SD 1.x")
    assert rows.note.text() == "ControlNet x is for SDXL; the model y is SD 1.x"


def test_the_section_is_off_for_chroma_and_with_a_start_image_for_sd3(qtbot, open_fake_window, make_engine,
                                                                     tmp_path, monkeypatch):
    fake_controlnet("edges")
    image = picture(tmp_path / "edges.png")
    window = open_fake_window(make_engine())
    form, rows = window.form, window.form.control_rows
    row = add_row(qtbot, form, monkeypatch, "edges", image)
    form.select_model(str(model_folder(tmp_path, "flux")))  # Flux.1 has ControlNets (not this one: see the run)
    assert rows.add_button.isEnabled() and row.isEnabled()
    form.select_model(str(model_folder(tmp_path, "chroma")))
    assert not rows.add_button.isEnabled() and not row.isEnabled()
    assert "Chroma" in row.toolTip() and "Chroma" in rows.add_button.toolTip()
    assert form.build_request().controls == ()  # kept for the next model, not sent
    form.select_model("default")
    assert row.isEnabled() and len(form.build_request().controls) == 1
    # a start image: the SD families take it with their ControlNets (image to image, inpainting)
    form.start_box.set_image(picture(tmp_path / "start.png", (64, 64)))
    assert row.isEnabled() and rows.add_button.isEnabled() and row.toolTip() == ""
    request = form.build_request()
    assert len(request.controls) == 1 and request.init_image is not None
    form.select_model(str(model_folder(tmp_path, "sdxl")))
    assert row.isEnabled() and form.start_box.path()
    form.select_model(str(model_folder(tmp_path, "flux")))  # Flux.1's take it too
    assert row.isEnabled() and rows.add_button.isEnabled() and row.toolTip() == ""
    # SD3's ControlNets are text to image: off while the start image is set
    form.select_model(str(model_folder(tmp_path, "sd3")))
    assert form.start_box.path() and not row.isEnabled() and not rows.add_button.isEnabled()
    assert row.toolTip() == START_IMAGE_LINE and "Flux.1" in START_IMAGE_LINE
    request = form.build_request()
    assert request.controls == () and request.init_image is not None
    form.select_model("default")
    form.start_box.clear()
    assert row.isEnabled() and len(form.build_request().controls) == 1


def recipe_png(path, **fields):
    request = GenerationRequest(**({"prompt": "a fox", "width": 64, "height": 64, "steps": 3, "seed": 5} | fields))
    recipe = generation_recipe(request, [5]).to_dict()
    png_recipe.save_png(Image.new("RGB", (64, 64), (40, 90, 200)), path, recipe, 5)
    return path


def test_a_dropped_recipe_restores_its_rows_and_names_what_is_missing_in_one_line(qtbot, open_fake_window,
                                                                                  drop, tmp_path):
    fake_controlnet("edges")
    image = picture(tmp_path / "edges.png")
    gone_image = picture(tmp_path / "gone.png")
    fake_controlnet("gone-net")
    made = recipe_png(tmp_path / "made.png", controls=(
        ControlChoice("edges", str(image), 0.6, 0.2, 0.9, "canny"),
        ControlChoice("gone-net", str(gone_image), 1.2)))
    gone_image.unlink()
    import shutil

    shutil.rmtree(controlnet_folder.controlnets_dir() / "gone-net")
    window = open_fake_window()
    assert drop(window, made)
    rows = window.form.control_rows.rows
    assert len(rows) == 2
    first = rows[0]
    assert (first.model(), first.image_path, first.weight_spin.value(), first.start_spin.value(),
            first.end_spin.value(), first.preprocessor_combo.currentText()) == ("edges", str(image), 0.6, 0.2,
                                                                               0.9, "canny")
    message = window.statusBar().currentMessage()
    assert "ControlNet gone-net" in message and "image gone.png" in message and "\n" not in message
    assert "gone-net" in window.form.control_rows.note.text()
    assert "ControlNet edges" not in message
    recipe_png(tmp_path / "plain.png")  # a recipe without ControlNets clears the rows
    assert drop(window, tmp_path / "plain.png")
    assert window.form.control_rows.rows == []


def test_a_dropped_recipe_with_a_start_image_and_controlnets_restores_both(qtbot, open_fake_window, drop,
                                                                          tmp_path):
    fake_controlnet("edges")
    image = picture(tmp_path / "edges.png")
    start = picture(tmp_path / "start.png", (64, 64))
    mask = tmp_path / "mask.png"
    Image.new("L", (64, 64), 255).save(mask)
    made = recipe_png(tmp_path / "made.png", init_image=str(start), mask=str(mask), strength=0.6,
                      controls=(ControlChoice("edges", str(image), 0.7, 0.1, 0.8, "canny"),))
    window = open_fake_window()
    assert drop(window, made)
    form, rows = window.form, window.form.control_rows
    assert str(form.start_box.path()) == str(start) and len(rows.rows) == 1 and rows.rows[0].isEnabled()
    request = form.build_request()
    assert request.init_image == str(start) and request.mask is not None and request.strength == 0.6
    assert [(c.weight, c.start, c.end, c.preprocessor) for c in request.controls] == [(0.7, 0.1, 0.8, "canny")]


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory):
    from tiny_checkpoints import build_tiny_pipeline
    from tiny_controlnets import build_controlnet, control_picture

    root = tmp_path_factory.mktemp("window-controlnet")
    pipe = build_tiny_pipeline("sd1")
    pipe.save_pretrained(root / "tiny-sd1")
    return {"model": root / "tiny-sd1", "control": build_controlnet(pipe.unet, root / "canny-tiny", 1),
            "picture": control_picture(root / "picture.png")}


def test_the_real_engine_draws_another_picture_with_a_controlnet_row(qtbot, open_window, tiny_sd, monkeypatch):
    from desktop_app.engine.generate import Engine

    window = open_window(engine_factory=lambda device: Engine(device="cpu"))
    form = window.form
    form.select_model(str(tiny_sd["model"]))
    form.width_spin.setValue(32)
    form.height_spin.setValue(32)
    form.steps_spin.setValue(4)
    form.random_check.setChecked(False)
    form.seed_spin.setValue(11)
    form.upscale_check.setChecked(False)
    form.prompt_edit.setPlainText("a red cat")
    with qtbot.waitSignal(window.run_ended, timeout=120_000) as ended:
        window.generate()
    assert ended.args == ["finished"], window.statusBar().currentMessage()
    plain = np.asarray(window._result.images[0], dtype=np.int16)
    row = form.control_rows.add_row()
    monkeypatch.setattr(ControlRow, "folder_dialog", staticmethod(lambda parent: str(tiny_sd["control"])))
    browse = row.folder_combo.findText("Browse…")
    row.folder_combo.activated.emit(browse)
    row.set_image(str(tiny_sd["picture"]))
    row.preprocessor_combo.setCurrentText("canny")
    with qtbot.waitSignal(window.run_ended, timeout=120_000) as ended:
        window.generate()
    assert ended.args == ["finished"]
    result = window._result
    controlled = np.asarray(result.images[0], dtype=np.int16)
    assert controlled.shape == plain.shape and np.abs(controlled - plain).max() > 8
    assert result.recipe.request.controls[0].model == str(tiny_sd["control"])

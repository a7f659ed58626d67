"""The form's image prompt row (issue 17): an image opened or dropped, a weight and an IP-Adapter (an entry of
<models>/ip-adapter/ or a file browsed to) go with Generate as the request's image prompt; Clear takes it out;
off (with a tooltip naming the family) for the embedded model and families without IP-Adapters; a bad adapter is
one line beside the row and in the status bar, and nothing runs; a dropped recipe restores the row, or names the
files missing here in one line. The adapters are torch-free fakes (a safetensors header of h94's layout and an
image encoder's config): the form reads them as the command line does."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt
from safetensors.numpy import save_file

from desktop_app.engine.request import GenerationRequest
from desktop_app.gui.image_prompt_row import ImagePromptRow
from desktop_app.models import ip_adapter_files
from desktop_app.studio import png_recipe

from tests.fake_recipes import generation_recipe

SD1_UNET = {"_class_name": "UNet2DConditionModel", "cross_attention_dim": 768, "block_out_channels": [32, 64]}
SDXL_UNET = {"_class_name": "UNet2DConditionModel", "cross_attention_dim": 2048, "block_out_channels": [32, 64],
             "addition_embed_type": "text_time"}


def fake_adapter(folder, width: int = 768, name: str = "ip-adapter_tiny", image_width: int = 32):
    """A plain IP-Adapter of cross-attention ``width`` for a UNet of 32 and 64 channels, and its image encoder,
    laid out as h94 lays them out (what models/ip_adapter_files.py reads without torch)."""
    folder.mkdir(parents=True, exist_ok=True)
    zeros = {"image_proj.proj.weight": np.zeros((4 * width, image_width), np.float32),
             "image_proj.norm.weight": np.zeros((width,), np.float32)}
    for k, channels in enumerate((32, 32, 64, 64)):
        for part in ("k", "v"):
            zeros[f"ip_adapter.{1 + 2 * k}.to_{part}_ip.weight"] = np.zeros((channels, width), np.float32)
    save_file(zeros, str(folder / f"{name}.safetensors"))
    encoder = folder / "image_encoder"
    encoder.mkdir(exist_ok=True)
    (encoder / "config.json").write_text(json.dumps({"architectures": ["CLIPVisionModelWithProjection"],
                                                     "model_type": "clip_vision_model", "hidden_size": 16,
                                                     "projection_dim": image_width}))
    save_file({"visual_projection.weight": np.zeros((image_width, 16), np.float32)},
              str(encoder / "model.safetensors"))
    return folder


def sd_model(root, name: str, unet: dict, pipeline: str = "StableDiffusionPipeline"):
    """A model folder the form reads as SD 1.x or SDXL (its index and UNet config)."""
    folder = root / name
    (folder / "unet").mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": pipeline}))
    (folder / "unet" / "config.json").write_text(json.dumps(unet))
    return folder


FLUX_TRANSFORMER = {"_class_name": "FluxTransformer2DModel", "num_layers": 2, "num_attention_heads": 2,
                    "attention_head_dim": 16, "joint_attention_dim": 64}


def fake_flux_adapter(folder, blocks: int = 2, width: int = 64, inner: int = 32):
    """XLabs' layout (what models/ip_adapter_files.py reads for Flux.1) and its image encoder."""
    fake_adapter(folder)
    (folder / "ip-adapter_tiny.safetensors").unlink()
    zeros = {"ip_adapter_proj_model.proj.weight": np.zeros((4 * width, 32), np.float32),
             "ip_adapter_proj_model.proj.bias": np.zeros((4 * width,), np.float32),
             "ip_adapter_proj_model.norm.weight": np.zeros((width,), np.float32)}
    for k in range(blocks):
        for part in ("k", "v"):
            prefix = f"double_blocks.{k}.processor.ip_adapter_double_stream_{part}_proj"
            zeros[f"{prefix}.weight"] = np.zeros((inner, width), np.float32)
            zeros[f"{prefix}.bias"] = np.zeros((inner,), np.float32)
    save_file(zeros, str(folder / "ip_adapter.safetensors"))
    return folder


def flux_model(root, name: str = "tiny-flux"):
    """A model folder the form reads as Flux.1 (its index and transformer config)."""
    folder = root / name
    (folder / "transformer").mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    (folder / "transformer" / "config.json").write_text(json.dumps(FLUX_TRANSFORMER))
    return folder


def picture(path, size=(40, 40)):
    pixels = np.zeros((size[1], size[0], 3), np.uint8)
    pixels[..., 0] = np.linspace(0, 255, size[0], dtype=np.uint8)
    pixels[10:30, 10:30] = (250, 240, 30)
    Image.fromarray(pixels).save(path)
    return path


def generate(qtbot, window):
    with qtbot.waitSignal(window.run_ended, timeout=20_000) as ended:
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    return ended.args[0]


def fill_row(qtbot, row, monkeypatch, image, adapter: str, weight: float):
    """What a person does: Open… the image, choose the adapter in the list, set the weight."""
    monkeypatch.setattr(ImagePromptRow, "image_dialog", staticmethod(lambda parent: str(image)))
    qtbot.mouseClick(row.image_button, Qt.MouseButton.LeftButton)
    index = row.adapter_combo.findText(adapter)
    assert index >= 0, [row.adapter_combo.itemText(i) for i in range(row.adapter_combo.count())]
    row.adapter_combo.setCurrentIndex(index)
    row.adapter_combo.activated.emit(index)
    row.weight_spin.setValue(weight)


def test_generate_sends_the_image_prompt_its_weight_and_adapter_and_clear_takes_it_out(
        qtbot, open_fake_window, make_engine, tmp_path, monkeypatch, drop):
    fake_adapter(ip_adapter_files.adapters_dir() / "sd15-plain")
    elsewhere = fake_adapter(tmp_path / "downloads", name="ip-adapter_sd15_light")
    model = sd_model(tmp_path, "tiny-sd1", SD1_UNET)
    image = picture(tmp_path / "look.png")
    engine = make_engine()
    window = open_fake_window(engine)
    form, row = window.form, window.form.image_prompt_row
    form.select_model(str(model))
    assert row.image_button.isEnabled() and row.weight_spin.value() == 0.6
    assert generate(qtbot, window) == "finished" and engine.requests[-1].image_prompt is None  # none by default
    fill_row(qtbot, row, monkeypatch, image, "sd15-plain", 0.8)
    assert not row.thumb.pixmap().isNull()
    assert generate(qtbot, window) == "finished"
    sent = engine.requests[-1]
    assert (sent.image_prompt, sent.image_prompt_weight, sent.ip_adapter) == (str(image), 0.8, "sd15-plain")
    # an adapter file browsed to goes by its path; an image dropped on the row replaces the one opened
    weights = elsewhere / "ip-adapter_sd15_light.safetensors"
    monkeypatch.setattr(ImagePromptRow, "file_dialog", staticmethod(lambda parent: str(weights)))
    browse = row.adapter_combo.findText("Browse file…")
    row.adapter_combo.setCurrentIndex(browse)
    row.adapter_combo.activated.emit(browse)
    assert row.adapter_combo.currentText() == "ip-adapter_sd15_light"
    other = picture(tmp_path / "other.png", (32, 48))
    assert drop(row, other) and row.image_path == str(other)
    assert generate(qtbot, window) == "finished"
    sent = engine.requests[-1]
    assert (sent.image_prompt, sent.image_prompt_weight, sent.ip_adapter) == (str(other), 0.8, str(weights))
    qtbot.mouseClick(row.clear_button, Qt.MouseButton.LeftButton)
    assert generate(qtbot, window) == "finished" and engine.requests[-1].image_prompt is None


def test_the_row_is_off_for_the_embedded_model_and_sd3_and_on_for_sdxl_and_flux(qtbot, open_fake_window, tmp_path,
                                                                                 monkeypatch):
    fake_adapter(ip_adapter_files.adapters_dir() / "sd15-plain")
    window = open_fake_window()
    form, row = window.form, window.form.image_prompt_row
    assert form.model() == "default"
    assert not row.image_button.isEnabled() and not row.adapter_combo.isEnabled()
    assert not row.weight_spin.isEnabled()
    assert "the embedded model" in row.toolTip() and "SDXL and Flux.1" in row.toolTip()
    assert row.note.text() == row.toolTip() and "\n" not in row.note.text()
    row.set_image(picture(tmp_path / "look.png"))
    assert form.build_request().image_prompt is None  # kept for the next model, not sent
    sd3 = tmp_path / "sd3"
    sd3.mkdir()
    (sd3 / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusion3Pipeline"}))
    form.select_model(str(sd3))
    assert not row.image_button.isEnabled() and "Stable Diffusion 3" in row.toolTip()
    form.select_model(str(flux_model(tmp_path)))
    assert row.image_button.isEnabled() and row.adapter_combo.isEnabled() and not row.note.isVisible()
    form.select_model(str(sd_model(tmp_path, "tiny-sd1", SD1_UNET)))
    assert row.image_button.isEnabled() and not row.note.isVisible()
    assert form.build_request().image_prompt == str(tmp_path / "look.png")
    form.select_model(str(sd_model(tmp_path, "tiny-sdxl", SDXL_UNET, "StableDiffusionXLPipeline")))
    assert row.image_button.isEnabled() and row.adapter_combo.isEnabled()


def test_a_bad_adapter_is_one_line_beside_the_row_and_nothing_runs(qtbot, open_fake_window, make_engine,
                                                                   tmp_path, monkeypatch):
    fake_adapter(ip_adapter_files.adapters_dir() / "sd15-plain")
    library = ip_adapter_files.adapters_dir()
    (library / "broken.safetensors").write_bytes(b"PK\x03\x04 a zip, not safetensors")
    engine = make_engine()
    window = open_fake_window(engine)
    form, row = window.form, window.form.image_prompt_row
    form.select_model(str(sd_model(tmp_path, "tiny-sdxl", SDXL_UNET, "StableDiffusionXLPipeline")))
    fill_row(qtbot, row, monkeypatch, picture(tmp_path / "look.png"), "sd15-plain", 0.5)
    window.generate()  # an SD 1.x adapter on an SDXL model
    note, status = row.note.text(), window.statusBar().currentMessage()
    assert "is for Stable Diffusion 1.x" in note and "SDXL" in note and "\n" not in note and row.note.isVisible()
    assert status.count("is for Stable Diffusion 1.x") == 1 and "Image prompt" in status and "\n" not in status
    assert "Traceback" not in status and engine.runs == 0
    row.adapter_combo.setCurrentIndex(row.adapter_combo.findText("broken"))
    window.generate()  # a file that is no safetensors
    assert "broken" in row.note.text() and "\n" not in row.note.text() and engine.runs == 0
    row.set_adapter(str(tmp_path / "nowhere"))
    window.generate()  # an adapter that is gone
    assert "not found" in row.note.text() and "nowhere" in window.statusBar().currentMessage()
    form.select_model(str(sd_model(tmp_path, "tiny-sd1", SD1_UNET)))
    row.adapter_combo.setCurrentIndex(row.adapter_combo.findText("sd15-plain"))
    assert generate(qtbot, window) == "finished" and engine.runs == 1
    assert not row.note.isVisible()  # the refused line goes with the next good run


def recipe_png(path, **fields):
    request = GenerationRequest(**({"prompt": "a fox", "width": 64, "height": 64, "steps": 3, "seed": 5} | fields))
    png_recipe.save_png(Image.new("RGB", (64, 64), (40, 90, 200)), path, generation_recipe(request, [5]).to_dict(),
                        5)
    return path


def test_a_dropped_recipe_restores_the_row_or_names_the_missing_files_in_one_line(qtbot, open_fake_window,
                                                                                  drop, tmp_path):
    adapter = fake_adapter(tmp_path / "adapters" / "sd15")
    model = sd_model(tmp_path, "tiny-sd1", SD1_UNET)
    image = picture(tmp_path / "look.png")
    made = recipe_png(tmp_path / "made.png", model=str(model), image_prompt=str(image), image_prompt_weight=1.3,
                      ip_adapter=str(adapter))
    window = open_fake_window()
    assert drop(window, made)
    row = window.form.image_prompt_row
    assert (row.image_path, row.weight_spin.value(), row.adapter()) == (str(image), 1.3, str(adapter))
    assert row.image_button.isEnabled() and "not available" not in window.statusBar().currentMessage()
    request = window.form.build_request()
    assert (request.image_prompt, request.image_prompt_weight, request.ip_adapter) == (str(image), 1.3,
                                                                                       str(adapter))
    # a recipe without an image prompt clears the image
    assert drop(window, recipe_png(tmp_path / "plain.png", model=str(model)))
    assert row.image_path == "" and window.form.build_request().image_prompt is None
    # the files gone: named in one line, the row left without an image
    gone = picture(tmp_path / "gone.png")
    made = recipe_png(tmp_path / "made-gone.png", model=str(model), image_prompt=str(gone),
                      ip_adapter=str(tmp_path / "adapters" / "gone-adapter"))
    gone.unlink()
    assert drop(window, made)
    message = window.statusBar().currentMessage()
    assert "image prompt gone.png" in message and "IP-Adapter" in message and "gone-adapter" in message
    assert "\n" not in message and "gone.png" in row.note.text() and row.image_path == ""


def test_the_real_engine_draws_another_picture_with_an_image_prompt(qtbot, open_window, tmp_path, monkeypatch):
    from tiny_checkpoints import build_tiny_pipeline
    from tiny_ip_adapters import build_ip_adapter, prompt_picture

    from desktop_app.engine.generate import Engine

    pipe = build_tiny_pipeline("sd1")
    pipe.save_pretrained(tmp_path / "tiny-sd1")
    adapter = build_ip_adapter(pipe.unet, ip_adapter_files.adapters_dir() / "tiny")
    window = open_window(engine_factory=lambda device: Engine(device="cpu"))
    form, row = window.form, window.form.image_prompt_row
    form.select_model(str(tmp_path / "tiny-sd1"))
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
    fill_row(qtbot, row, monkeypatch, prompt_picture(tmp_path / "prompt.png"), "tiny", 1.0)
    with qtbot.waitSignal(window.run_ended, timeout=120_000) as ended:
        window.generate()
    assert ended.args == ["finished"], window.statusBar().currentMessage()
    result = window._result
    steered = np.asarray(result.images[0], dtype=np.int16)
    assert steered.shape == plain.shape and np.abs(steered - plain).max() > 8
    assert result.recipe.request.ip_adapter == "tiny" and adapter.name == "tiny"
    assert result.recipe.image_prompt_model["weight"] == 1.0


def test_a_flux_adapter_goes_with_generate_on_flux_and_is_refused_on_sd_in_one_line(qtbot, open_fake_window,
                                                                                     make_engine, tmp_path,
                                                                                     monkeypatch):
    fake_adapter(ip_adapter_files.adapters_dir() / "sd15-plain")
    fake_flux_adapter(ip_adapter_files.adapters_dir() / "flux-ip-adapter")
    fake_flux_adapter(ip_adapter_files.adapters_dir() / "flux-three-blocks", blocks=3)
    engine = make_engine()
    window = open_fake_window(engine)
    form, row = window.form, window.form.image_prompt_row
    form.select_model(str(flux_model(tmp_path)))
    image = picture(tmp_path / "look.png")
    fill_row(qtbot, row, monkeypatch, image, "flux-ip-adapter", 0.9)
    assert generate(qtbot, window) == "finished"
    sent = engine.requests[-1]
    assert (sent.image_prompt, sent.image_prompt_weight, sent.ip_adapter) == (str(image), 0.9, "flux-ip-adapter")
    refusals = [("sd15-plain", "is for Stable Diffusion 1.x (768 wide); the model tiny-flux is Flux.1"),
                ("flux-three-blocks", "another size of Flux.1 than the model tiny-flux: double blocks 3 (the "
                                      "model's 2)")]
    for adapter, words in refusals:
        row.adapter_combo.setCurrentIndex(row.adapter_combo.findText(adapter))
        window.generate()
        assert words in row.note.text() and "\n" not in row.note.text() and engine.runs == 1
    form.select_model(str(sd_model(tmp_path, "tiny-sd1", SD1_UNET)))
    row.adapter_combo.setCurrentIndex(row.adapter_combo.findText("flux-ip-adapter"))
    window.generate()
    assert "is for Flux.1 (64 wide); the model tiny-sd1 is Stable Diffusion 1.x" in row.note.text()
    assert engine.runs == 1

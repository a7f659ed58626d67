"""The LoRA picker follows the model's family: on for the SD UNets, Flux.1, Chroma, SD3, Sana, Sana Sprint,
Z-Image, Qwen-Image and FLUX.2 [klein] (the families the engine applies LoRAs to), off with a line naming the
family for the other transformers (PixArt-Sigma), whose ticked LoRAs are kept for the next model but not sent
(the engine would refuse them)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from desktop_app.engine.request import LoraChoice
from desktop_app.models import families

TRANSFORMERS = [key for key, f in families.FAMILIES.items() if f.denoiser_folder == "transformer" and f.pipelines]
# a Z-Image transformer file in its makers' layout (the tensor names models/families.py recognises it by)
Z_IMAGE_FILE = {"layers.0.adaLN_modulation.0.weight": (8, 8), "layers.0.attention.qkv.weight": (24, 8)}


def model_folder(root, family: str):
    """A diffusers folder of ``family`` as the form reads it (model_index.json names the pipeline)."""
    folder = root / family
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps({"_class_name": families.FAMILIES[family].pipelines[0]}))
    return folder


def write_lora(name: str):
    from desktop_app import paths

    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    path = paths.loras_dir() / f"{name}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"{key}.lora_down.weight": np.zeros((2, 768), np.float32),
               f"{key}.lora_up.weight": np.zeros((8, 2), np.float32)}, str(path))
    return path


@pytest.fixture
def form(qtbot):
    from desktop_app.gui.generation_form import GenerationForm

    write_lora("ink")
    widget = GenerationForm()
    qtbot.addWidget(widget)
    return widget


def tick(form, name: str, weight: float = 0.8):
    from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox

    form.lora_picker.findChild(QCheckBox, f"lora_check_{name}").setChecked(True)
    form.lora_picker.findChild(QDoubleSpinBox, f"lora_weight_{name}").setValue(weight)


@pytest.mark.parametrize("family", TRANSFORMERS)
def test_the_picker_is_on_exactly_for_the_families_that_take_loras(form, tmp_path, family):
    declared = families.FAMILIES[family]
    tick(form, "ink")
    form.select_model(str(model_folder(tmp_path, family)))
    picker = form.lora_picker
    if declared.loras:
        assert picker.isEnabled() and picker.toolTip() == "" and picker.family_note.isHidden()
        assert form.build_request().loras == (LoraChoice("ink", 0.8),)
    else:
        assert not picker.isEnabled()
        assert picker.toolTip().startswith(f"{declared.name} models take no LoRAs")
        assert not picker.family_note.isHidden() and picker.family_note.text() == picker.toolTip()
        assert form.build_request().loras == ()  # not sent: the engine would refuse the run


def test_the_families_that_take_loras_are_those_the_engine_applies_them_to():
    """The window's table and the engine's list are one: flow.LORA_FAMILIES reads models/families.py."""
    from desktop_app.engine.families.flow import LORA_FAMILIES

    takers = {key for key, f in families.FAMILIES.items() if f.loras}
    assert set(LORA_FAMILIES) == {"flux", "chroma", "sd3", "sana", "sana-sprint", "z-image", "qwen-image",
                                  "flux2-klein"} == takers - families.SD_FAMILIES
    assert families.SD_FAMILIES <= takers


def test_ticks_are_kept_across_a_family_without_loras(form, tmp_path):
    tick(form, "ink", 0.6)
    form.select_model(str(model_folder(tmp_path, "pixart-sigma")))
    assert form.build_request().loras == () and form.lora_picker.names_checked() == []
    form.select_model(str(model_folder(tmp_path, "flux")))
    assert form.lora_picker.isEnabled() and form.build_request().loras == (LoraChoice("ink", 0.6),)
    form.select_model("default")  # the embedded model: an SD UNet, takes them
    assert form.lora_picker.isEnabled() and form.build_request().loras == (LoraChoice("ink", 0.6),)


def test_a_transformer_file_is_known_by_its_header(form, tmp_path):
    """A single transformer file's family comes from its tensor names (no torch): Z-Image takes LoRAs."""
    file = tmp_path / "z_image_turbo.safetensors"
    save_file({name: np.zeros(shape, np.float16) for name, shape in Z_IMAGE_FILE.items()}, str(file))
    form.select_model(str(file))
    assert form.lora_picker.isEnabled() and form.lora_picker.toolTip() == ""
    assert form.sampler_combo.count() == 1 and form.sampler_combo.currentText() == "Euler"  # its own sampler
    assert not form.negative_edit.isEnabled()  # Z-Image takes no negative prompt


def test_a_recipe_with_loras_on_a_model_without_them_names_them_as_skipped(form, tmp_path):
    folder = model_folder(tmp_path, "pixart-sigma")
    skipped = form.apply_request({"model": str(folder), "loras": [{"name": "ink", "weight": 0.5}]})
    assert skipped == ["loras"] and form.build_request().loras == ()
    assert form.apply_request({"model": str(folder), "loras": []}) == []


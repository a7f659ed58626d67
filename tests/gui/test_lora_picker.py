"""The LoRA picker: LoRAs found in the LoRA folder (kohya files and diffusers-format folders), trigger words
from their metadata, ticks and weights into the request, and back from a recipe."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from safetensors.numpy import save_file

from desktop_app.engine.request import LoraChoice


def write_lora(path, metadata=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    key = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file({f"{key}.lora_down.weight": np.zeros((2, 32), np.float32),
               f"{key}.lora_up.weight": np.zeros((8, 2), np.float32)}, str(path), metadata=metadata)
    return path


def make_form(qtbot):
    from desktop_app.gui.generation_form import GenerationForm

    form = GenerationForm()
    qtbot.addWidget(form)
    return form


def test_the_picker_lists_loras_with_trigger_words_and_builds_the_request(qtbot):
    from desktop_app import paths

    folder = paths.loras_dir()
    write_lora(folder / "sks-dog.safetensors", {"desktop_app_trigger": "sks"})
    write_lora(folder / "painted" / "pytorch_lora_weights.safetensors")  # the trainer's diffusers format
    form = make_form(qtbot)
    picker = form.lora_picker
    assert picker.names() == ["painted", "sks-dog"]
    assert picker.findChild(type(picker.empty_label), "lora_trigger_sks-dog").text() == "trigger: sks"
    from PySide6.QtWidgets import QCheckBox

    # the family comes from the tensors: attn2.to_k takes 32-wide text features here, no known family
    assert picker.findChild(QCheckBox, "lora_check_sks-dog").text() == "sks-dog"
    assert form.build_request().loras == ()
    from PySide6.QtWidgets import QCheckBox, QDoubleSpinBox

    picker.findChild(QCheckBox, "lora_check_sks-dog").setChecked(True)
    picker.findChild(QDoubleSpinBox, "lora_weight_sks-dog").setValue(0.65)
    assert form.build_request().loras == (LoraChoice("sks-dog", 0.65),)


def test_a_recipe_ticks_its_loras_and_names_the_missing_ones(qtbot):
    from desktop_app import paths

    write_lora(paths.loras_dir() / "sks-dog.safetensors")
    form = make_form(qtbot)
    skipped = form.apply_request({"loras": [{"name": "sks-dog", "weight": 0.4}, {"name": "elsewhere"}]})
    assert skipped == ["loras"]
    assert form.build_request().loras == (LoraChoice("sks-dog", 0.4),)
    form.apply_request({"loras": []})
    assert form.build_request().loras == ()


def test_an_empty_folder_says_where_loras_go(qtbot):
    form = make_form(qtbot)
    assert form.lora_picker.names() == [] and not form.lora_picker.empty_label.isHidden()


def test_the_picker_does_not_import_torch():
    code = "import sys; import desktop_app.gui.lora_picker; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_family_a_lora_fits_is_shown(qtbot):
    from PySide6.QtWidgets import QCheckBox

    from desktop_app import paths

    key = "lora_unet_down_blocks_1_attentions_0_transformer_blocks_0_attn2_to_k"
    save_file({f"{key}.lora_down.weight": np.zeros((4, 2048), np.float32),
               f"{key}.lora_up.weight": np.zeros((640, 4), np.float32)}, str(paths.loras_dir() / "xl.safetensors"))
    (paths.loras_dir() / "broken.safetensors").write_bytes(b"not a safetensors file at all")
    form = make_form(qtbot)
    assert form.lora_picker.findChild(QCheckBox, "lora_check_xl").text() == "xl (SDXL)"
    assert form.lora_picker.findChild(QCheckBox, "lora_check_broken").text() == "broken (unreadable)"


def test_a_few_step_model_sets_its_steps_guidance_and_sampler(qtbot, tmp_path):
    import json

    folder = tmp_path / "some-lcm-model"
    (folder / "scheduler").mkdir(parents=True)
    (folder / "scheduler" / "scheduler_config.json").write_text(json.dumps({"_class_name": "LCMScheduler"}))
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "StableDiffusionPipeline"}))
    form = make_form(qtbot)
    form.select_model(str(folder))
    request = form.build_request()
    assert (request.steps, request.guidance_scale, request.sampler) == (6, 1.0, "LCM")

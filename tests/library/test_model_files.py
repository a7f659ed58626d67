"""model_files.inspect: hostile and broken files are refused with their message; the family, kind and layout
come from the tensors, never from the file name."""

from __future__ import annotations

import subprocess
import sys

import pytest
from crafted_files import (DIFFUSERS_LORA_SDXL, EMBEDDING_SD1, EMBEDDING_SDXL, ESRGAN, FAMILY_SHAPES, HOSTILE,
                           KOHYA_LORA, make_hostile, write_safetensors)

from desktop_app.models import model_files
from desktop_app.errors import ModelError


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_hostile_and_broken_files_are_refused_with_their_message(kind, tmp_path):
    path, words = make_hostile(kind, tmp_path)
    with pytest.raises(ModelError) as caught:
        model_files.inspect(path)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message, f"{kind}: {word!r} missing from {message!r}"


def test_a_good_file_passes_the_same_checks(tmp_path):
    path = write_safetensors(tmp_path / "model.safetensors", FAMILY_SHAPES["sd1"])
    info = model_files.inspect(path)
    assert info.size_bytes == path.stat().st_size
    assert info.tensor_count == len(FAMILY_SHAPES["sd1"])


def test_a_tensor_whose_bytes_do_not_match_its_shape_is_damaged(tmp_path):
    import json
    import struct

    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 10]}}).encode()
    path = tmp_path / "odd.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 10)
    with pytest.raises(ModelError, match=r"needs 64 bytes but the header gives it 10"):
        model_files.inspect(path)


@pytest.mark.parametrize("family", sorted(FAMILY_SHAPES))
def test_the_family_of_an_original_checkpoint_comes_from_its_tensors(family, tmp_path):
    # the name says SD1 for every family: the content must win
    path = write_safetensors(tmp_path / "sd15-pruned.safetensors", FAMILY_SHAPES[family])
    info = model_files.inspect(path)
    assert (info.kind, info.family, info.layout) == ("checkpoint", family, "original")
    assert model_files.FAMILY_NAMES[family] in info.details


def test_the_unet_width_decides_when_only_the_unet_is_there(tmp_path):
    key = "model.diffusion_model.middle_block.1.transformer_blocks.0.attn2.to_k.weight"
    path = write_safetensors(tmp_path / "unet-only.safetensors", {key: (4, 1024)})
    assert model_files.inspect(path).family == "sd2"


def test_kohya_and_diffusers_loras_and_the_family_they_fit(tmp_path):
    kohya = model_files.inspect(write_safetensors(tmp_path / "a.safetensors", KOHYA_LORA))
    assert (kohya.kind, kohya.layout, kohya.family) == ("lora", "kohya", "sd1")
    assert "rank 4" in kohya.details
    peft = model_files.inspect(write_safetensors(tmp_path / "b.safetensors", DIFFUSERS_LORA_SDXL))
    assert (peft.kind, peft.layout, peft.family) == ("lora", "diffusers", "sdxl")
    old_style = {k.replace("lora_A", "lora.down").replace("lora_B", "lora.up"): v
                 for k, v in DIFFUSERS_LORA_SDXL.items()}
    assert model_files.inspect(write_safetensors(tmp_path / "c.safetensors", old_style)).layout == "diffusers"
    embedded = {"unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": (4, 384),
                "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": (64, 4)}
    assert model_files.inspect(write_safetensors(tmp_path / "d.safetensors", embedded)).family == "embedded"
    flux = {"transformer.single_transformer_blocks.0.attn.to_k.lora_A.weight": (4, 64),
            "transformer.single_transformer_blocks.0.attn.to_k.lora_B.weight": (64, 4)}
    assert model_files.inspect(write_safetensors(tmp_path / "e.safetensors", flux)).family == "flux"
    sd3 = {"transformer.transformer_blocks.0.attn.add_k_proj.lora_A.weight": (4, 1536),  # SD3 Medium's width
           "transformer.transformer_blocks.0.attn.add_k_proj.lora_B.weight": (1536, 4)}
    assert model_files.inspect(write_safetensors(tmp_path / "f.safetensors", sd3)).family == "sd3"
    xl_kohya = {"lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_down.weight": (8, 2048),
                "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k.lora_up.weight": (640, 8),
                "lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (8, 1280)}
    info = model_files.inspect(write_safetensors(tmp_path / "g.safetensors", xl_kohya))
    assert (info.layout, info.family) == ("kohya", "sdxl")


def test_embeddings_and_upscalers(tmp_path):
    sd1 = model_files.inspect(write_safetensors(tmp_path / "e.safetensors", EMBEDDING_SD1))
    assert (sd1.kind, sd1.family) == ("embedding", "sd1")
    assert "3 vector" in sd1.details
    xl = model_files.inspect(write_safetensors(tmp_path / "f.safetensors", EMBEDDING_SDXL))
    assert (xl.kind, xl.family) == ("embedding", "sdxl")
    up = model_files.inspect(write_safetensors(tmp_path / "g.safetensors", ESRGAN))
    assert up.kind == "upscaler"


def test_a_safetensors_file_named_ckpt_is_read_by_its_content(tmp_path):
    path = write_safetensors(tmp_path / "model.ckpt", FAMILY_SHAPES["sdxl"])
    assert model_files.inspect(path).family == "sdxl"


def test_diffusers_folders(tiny_sd_dir, tiny_model_dir, tmp_path):
    plain = model_files.inspect(tiny_sd_dir)
    assert plain.kind == "diffusers" and plain.layout == "diffusers"
    assert plain.tensor_count > 0 and plain.size_bytes > 0
    assert model_files.inspect(tiny_model_dir).family == "embedded"
    empty = tmp_path / "not-a-model"
    empty.mkdir()
    with pytest.raises(ModelError, match="no model_index.json"):
        model_files.inspect(empty)


def test_the_module_imports_without_torch():
    code = ("import sys, desktop_app.models.model_files, desktop_app.models.model_library; "
            "sys.exit(1 if {'torch', 'diffusers', 'PySide6'} & set(sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0

"""The family of a diffusers-layout LoRA on the joint attention blocks, whose layer names Flux.1 and SD3 share:
the width its down-projections read decides (3072 Flux.1; 1536, 2432 SD3), in the library (model_files, what the
window's LoRA list shows) as in the engine's check before loading (engine/lora_families.py): the same rule."""

from __future__ import annotations

import pytest
from crafted_files import write_safetensors

from desktop_app.models import model_files

FLUX_DOUBLE_ATTENTION = ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj")
TO_QKV = ("to_q", "to_k", "to_v")


def lora(width: int, layers=FLUX_DOUBLE_ATTENTION, prefix: str = "transformer.", blocks: int = 2,
         rank: int = 4) -> dict:
    """A diffusers/peft LoRA on the joint blocks' attention: lora_A reads ``width``, lora_B gives it back."""
    shapes = {}
    for block in range(blocks):
        for layer in layers:
            base = f"{prefix}transformer_blocks.{block}.attn.{layer}"
            shapes[f"{base}.lora_A.weight"] = (rank, width)
            shapes[f"{base}.lora_B.weight"] = (width, rank)
    return shapes


def family_of(tmp_path, name: str, shapes: dict) -> model_files.FileInfo:
    return model_files.inspect(write_safetensors(tmp_path / f"{name}.safetensors", shapes))


def test_a_flux_lora_on_the_double_blocks_attention_alone_is_flux(tmp_path):
    """add_k_proj used to mean SD3: a Flux.1 LoRA trained on the double blocks only was listed as SD3's."""
    info = family_of(tmp_path, "flux-double", lora(3072))
    assert (info.kind, info.layout, info.family) == ("lora", "diffusers", "flux")
    assert "for Flux.1" in info.details and "12 layers" in info.details
    assert family_of(tmp_path, "no-prefix", lora(3072, prefix="")).family == "flux"  # peft without "transformer."


@pytest.mark.parametrize("width", [1536, 2432])  # SD3 Medium / SD3.5 Medium, SD3.5 Large
def test_an_sd3_lora_on_to_q_k_v_alone_is_sd3(tmp_path, width):
    """to_q/to_k/to_v alone have no name only SD3 has: the width tells (it used to be "unknown")."""
    info = family_of(tmp_path, f"sd3-{width}", lora(width, TO_QKV))
    assert (info.kind, info.family) == ("lora", "sd3")
    assert "for Stable Diffusion 3.x" in info.details
    assert family_of(tmp_path, f"sd3-add-{width}", lora(width)).family == "sd3"


@pytest.mark.parametrize("width", [64, 1024, 4096])
def test_a_width_of_no_published_model_is_unknown(tmp_path, width):
    assert family_of(tmp_path, f"odd-{width}", lora(width)).family == "unknown"


def test_the_names_only_one_family_has_still_decide_first(tmp_path):
    single = {"transformer.single_transformer_blocks.0.attn.to_k.lora_A.weight": (4, 64),
              "transformer.single_transformer_blocks.0.attn.to_k.lora_B.weight": (64, 4)}
    assert family_of(tmp_path, "single", single | lora(1536)).family == "flux"
    joint = {"joint_blocks.0.context_block.attn.qkv.lora_down.weight": (4, 64),
             "joint_blocks.0.context_block.attn.qkv.lora_up.weight": (192, 4)}
    assert family_of(tmp_path, "joint", joint | lora(3072)).family == "sd3"


def test_an_sd_unet_lora_is_not_taken_for_a_transformer_one(tmp_path):
    """The UNet's transformer_blocks have attn1/attn2, never attn: its family still comes from attn2's width."""
    unet = {"unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": (4, 768),
            "unet.mid_block.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": (320, 4),
            "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": (4, 3072),
            "unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": (3072, 4)}
    assert family_of(tmp_path, "unet", unet).family == "sd1"


@pytest.mark.parametrize("width, library, engine", [(3072, "flux", "flux"), (1536, "sd3", "sd3"),
                                                    (2432, "sd3", "sd3"), (64, "unknown", "transformer")])
def test_the_library_and_the_engine_read_the_width_alike(tmp_path, width, library, engine):
    """The engine's check before loading (torch-free up to here) gives the same family, or "transformer" where
    the model's own shapes decide."""
    from desktop_app.engine.lora_families import lora_family, read_header

    path = write_safetensors(tmp_path / "l.safetensors", lora(width, TO_QKV))
    info = model_files.inspect(path)
    assert info.family == library
    assert lora_family(read_header(path), info.family) == engine

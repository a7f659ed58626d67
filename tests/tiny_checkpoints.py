"""Tiny single-file checkpoints in the original layout for SD 1.x, SD 2.x, SDXL and the SDXL refiner.

Each is built as a tiny random diffusers pipeline with the family's real cross-attention width (768, 1024,
2048 = 768 + 1280, the refiner's 1280) but tiny blocks, then written as one ``.safetensors`` in the original
key layout (tests/original_layout.py). Next to it, a config folder (the pipeline's configs and tokenizers, no
weights) plays the part of the bundled resources/configs/<family>/ folder, which describes full-size models.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from types import SimpleNamespace
from pathlib import Path

import torch
from original_layout import pipeline_to_original
from tiny_models import _vae, tiny_clip_tokenizer

FAMILIES = ("sd1", "sd2", "sdxl")
REFINER = "sdxl-refiner"


@dataclass
class TinyCheckpoint:
    family: str
    checkpoint: Path  # the original-layout .safetensors
    config_dir: Path  # configs and tokenizers only
    pipe: object  # the diffusers pipeline it was written from (the expected weights)


def _text_encoder(tokenizer, hidden: int, heads: int, act: str, projection: int | None = None):
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=1,
        hidden_size=hidden, intermediate_size=37, num_attention_heads=heads, num_hidden_layers=2,
        vocab_size=len(tokenizer), max_position_embeddings=16, layer_norm_eps=1e-5, hidden_act=act,
        projection_dim=projection or hidden)
    return (CLIPTextModelWithProjection if projection else CLIPTextModel)(config)


def _unet(family: str):
    from diffusers import UNet2DConditionModel

    common = dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
                  attention_head_dim=4, norm_num_groups=4)
    if family in ("sdxl", REFINER):
        # the refiner reads OpenCLIP alone (1280) and 5 time ids (sizes, crop, aesthetic score) instead of 6
        refiner = family == REFINER
        return UNet2DConditionModel(
            **common, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=1280 if refiner else 2048,
            use_linear_projection=True, addition_embed_type="text_time", addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=32 + (5 if refiner else 6) * 8)
    return UNet2DConditionModel(
        **common, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=768 if family == "sd1" else 1024, use_linear_projection=family == "sd2")


def build_tiny_pipeline(family: str, seed: int = 0, base=None):
    """A tiny random pipeline of ``family``. For the SDXL refiner, ``base`` (a tiny SDXL pipeline) lends its
    VAE and text encoder 2, as the published refiner holds the same ones as its base."""
    from diffusers import (DDIMScheduler, EulerDiscreteScheduler, StableDiffusionPipeline,
                           StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline)

    torch.manual_seed(seed)
    schedule = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1)
    if family == REFINER:
        if base is None:
            tokenizer_2 = tiny_clip_tokenizer()
            tokenizer_2.pad_token = "!"
            base = SimpleNamespace(vae=_vae(), tokenizer_2=tokenizer_2,
                                   text_encoder_2=_text_encoder(tokenizer_2, 1280, 20, "gelu", projection=32))
        return StableDiffusionXLImg2ImgPipeline(
            vae=base.vae, text_encoder=None, tokenizer=None, text_encoder_2=base.text_encoder_2,
            tokenizer_2=base.tokenizer_2, unet=_unet(family), scheduler=EulerDiscreteScheduler(**schedule),
            requires_aesthetics_score=True, force_zeros_for_empty_prompt=False)
    tokenizer = tiny_clip_tokenizer()
    if family == "sdxl":
        tokenizer_2 = tiny_clip_tokenizer()
        tokenizer_2.pad_token = "!"
        return StableDiffusionXLPipeline(
            vae=_vae(), text_encoder=_text_encoder(tokenizer, 768, 12, "quick_gelu"),
            text_encoder_2=_text_encoder(tokenizer_2, 1280, 20, "gelu", projection=32), tokenizer=tokenizer,
            tokenizer_2=tokenizer_2, unet=_unet(family), scheduler=EulerDiscreteScheduler(**schedule))
    if family == "sd2":
        tokenizer.pad_token = "!"
    text_encoder = (_text_encoder(tokenizer, 768, 12, "quick_gelu") if family == "sd1"
                    else _text_encoder(tokenizer, 1024, 16, "gelu"))
    scheduler = DDIMScheduler(**schedule, clip_sample=False, set_alpha_to_one=False,
                              prediction_type="epsilon" if family == "sd1" else "v_prediction")
    return StableDiffusionPipeline(vae=_vae(), text_encoder=text_encoder, tokenizer=tokenizer, unet=_unet(family),
                                   scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)


def write_checkpoint(pipe, family: str, path: Path) -> Path:
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous() for k, v in pipeline_to_original(pipe, family).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, path)
    return path


def write_config_dir(pipe, out: Path) -> Path:
    """The pipeline's folder without its weights: what from_single_file(config=...) needs."""
    staging = out.with_name(out.name + "-full")
    pipe.save_pretrained(staging)
    shutil.copytree(staging, out, ignore=shutil.ignore_patterns("*.safetensors", "*.bin"))
    shutil.rmtree(staging)
    return out


def build_tiny_checkpoint(family: str, root: Path, seed: int = 0, base=None) -> TinyCheckpoint:
    pipe = build_tiny_pipeline(family, seed, base)
    checkpoint = write_checkpoint(pipe, family, root / f"tiny-{family}.safetensors")
    config_dir = write_config_dir(pipe, root / f"tiny-{family}-config")
    return TinyCheckpoint(family, checkpoint, config_dir, pipe)

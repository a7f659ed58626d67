"""Tiny random IP-Adapters for the tests (issue 17), laid out as h94/IP-Adapter lays them out: a folder holding
``ip-adapter_tiny.safetensors`` (``image_proj.*``: the plain adapter's projection of a CLIP image embedding into
4 tokens of the UNet's cross-attention width; ``ip_adapter.{1,3,5...}.to_k_ip/to_v_ip.weight``: a key and a value
projection per cross-attention layer, in the UNet's order) and ``image_encoder/``, a tiny random
CLIPVisionModelWithProjection. The projections are random and not small, so that an adapter at weight 1 visibly
changes the picture (a test of its effect must not pass for the wrong reason)."""

from __future__ import annotations

from pathlib import Path

import torch

IMAGE_WIDTH = 32  # the tiny image encoder's projected embedding


def build_image_encoder(out: Path, projection: int = IMAGE_WIDTH, seed: int = 0) -> Path:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(hidden_size=16, projection_dim=projection, intermediate_size=37, num_hidden_layers=2,
                              num_attention_heads=4, image_size=32, patch_size=8, num_channels=3)
    CLIPVisionModelWithProjection(config).save_pretrained(out)
    return Path(out)


def adapter_state(unet, image_width: int = IMAGE_WIDTH, seed: int = 0) -> dict:
    """The original-layout state dict of a plain IP-Adapter for ``unet`` (a diffusers UNet2DConditionModel)."""
    generator = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim

    def random(*shape, scale=1.0):
        return (torch.randn(*shape, generator=generator) * scale / shape[-1] ** 0.5).contiguous()

    state = {"image_proj.proj.weight": random(4 * cross, image_width, scale=4.0),
             "image_proj.proj.bias": torch.zeros(4 * cross), "image_proj.norm.weight": torch.ones(cross),
             "image_proj.norm.bias": torch.zeros(cross)}
    names = [name for name in unet.attn_processors if not name.endswith("attn1.processor")]
    for k, name in enumerate(names):
        attn = unet.get_submodule(name.removesuffix(".processor"))
        for part, linear in (("k", attn.to_k), ("v", attn.to_v)):
            state[f"ip_adapter.{1 + 2 * k}.to_{part}_ip.weight"] = random(linear.out_features, linear.in_features,
                                                                          scale=3.0)
    return state


def build_ip_adapter(unet, out: Path, seed: int = 0, name: str = "ip-adapter_tiny") -> Path:
    """A folder ``out`` with ``NAME.safetensors`` for ``unet`` and its ``image_encoder/``."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(adapter_state(unet, seed=seed), out / f"{name}.safetensors")
    build_image_encoder(out / "image_encoder", seed=seed)
    return out


def prompt_picture(path: Path, size: int = 48) -> Path:
    """A picture for the image prompt: a colourful gradient with a bright disc."""
    import numpy as np
    from PIL import Image

    y, x = np.mgrid[0:size, 0:size]
    pixels = np.stack([x * 255 // size, y * 255 // size, np.full_like(x, 120)], axis=-1).astype(np.uint8)
    pixels[(x - size // 2) ** 2 + (y - size // 3) ** 2 < (size // 5) ** 2] = (250, 240, 30)
    Image.fromarray(pixels).save(path)
    return Path(path)


def flux_adapter_state(transformer, image_width: int = IMAGE_WIDTH, seed: int = 0, tokens: int = 4) -> dict:
    """XLabs' layout (XLabs-AI/flux-ip-adapter's ``ip_adapter.safetensors``) of a Flux.1 IP-Adapter for
    ``transformer`` (a diffusers FluxTransformer2DModel): ``ip_adapter_proj_model.{proj,norm}.*`` and a key and
    value projection (with biases) from the T5-wide image tokens for each double block."""
    generator = torch.Generator().manual_seed(seed)
    config = transformer.config
    joint, inner = config.joint_attention_dim, config.num_attention_heads * config.attention_head_dim

    def random(*shape, scale=1.0):
        return (torch.randn(*shape, generator=generator) * scale / shape[-1] ** 0.5).contiguous()

    state = {"ip_adapter_proj_model.proj.weight": random(tokens * joint, image_width, scale=4.0),
             "ip_adapter_proj_model.proj.bias": torch.zeros(tokens * joint),
             "ip_adapter_proj_model.norm.weight": torch.ones(joint),
             "ip_adapter_proj_model.norm.bias": torch.zeros(joint)}
    for k in range(len(transformer.transformer_blocks)):
        for part in ("k", "v"):
            prefix = f"double_blocks.{k}.processor.ip_adapter_double_stream_{part}_proj"
            state[f"{prefix}.weight"] = random(inner, joint, scale=3.0)
            state[f"{prefix}.bias"] = random(inner, scale=0.5)
    return state


def build_flux_ip_adapter(transformer, out: Path, seed: int = 0, name: str = "ip_adapter") -> Path:
    """A folder ``out`` as XLabs-AI/flux-ip-adapter with the image encoder put beside it: ``NAME.safetensors``
    for ``transformer`` and ``image_encoder/`` (a tiny random CLIPVisionModelWithProjection)."""
    from safetensors.torch import save_file

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(flux_adapter_state(transformer, seed=seed), out / f"{name}.safetensors")
    build_image_encoder(out / "image_encoder", seed=seed)
    return out

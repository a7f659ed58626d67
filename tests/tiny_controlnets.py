"""Tiny random ControlNets for the tests (issue 17): ``ControlNetModel.from_unet`` on a tiny SD UNet, its
conditioning embedding sized to the tiny VAE's 4x downscale, and its zero-initialised output convolutions
filled with random weights (a fresh ControlNet adds nothing, which would make every test of its effect pass
for the wrong reason)."""

from __future__ import annotations

from pathlib import Path

import torch


def build_controlnet(unet, out: Path, seed: int = 0) -> Path:
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    net = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 8, 8))
    with torch.no_grad():
        outputs = [*net.controlnet_down_blocks, net.controlnet_mid_block, net.controlnet_cond_embedding.conv_out]
        for layer in outputs:
            torch.nn.init.normal_(layer.weight, std=0.5)
    net.save_pretrained(out)
    return Path(out)


def build_sd_with_controlnets(root: Path, names=("canny-a", "canny-b")) -> dict:
    """A tiny SD 1.x folder (768 wide), ControlNets from its UNet (one per name, each its own seed) and a tiny
    SDXL ControlNet: {"model": folder, NAME: folder ..., "sdxl": folder}."""
    from tiny_checkpoints import build_tiny_pipeline

    root = Path(root)
    pipe = build_tiny_pipeline("sd1")
    pipe.save_pretrained(root / "tiny-sd1")
    found = {"model": root / "tiny-sd1"}
    for seed, name in enumerate(names, start=1):
        found[name] = build_controlnet(pipe.unet, root / name, seed)
    found["sdxl"] = build_controlnet(build_tiny_pipeline("sdxl").unet, root / "xl-control", 9)
    return found


def control_picture(path: Path, size: int = 32) -> Path:
    """A picture with edges for Canny to find: a bright square and a diagonal bar on a dark ground."""
    import numpy as np
    from PIL import Image

    pixels = np.full((size, size, 3), 20, np.uint8)
    pixels[size // 4: size // 2, size // 4: size // 2] = (230, 200, 40)
    for k in range(size):
        pixels[k, max(0, k - 3): k + 3] = (40, 90, 220)
    Image.fromarray(pixels).save(path)
    return Path(path)

"""Stage 5: the 4x upscaler, a compact SRVGGNet (the realesr-general-x4v3 architecture) that spandrel loads.

Trained on Fluent Emoji rendered at 256 px, from 64 px inputs that are half clean downscales and half the
same downscales passed through the trained VAE, which is what the upscaler sees after a generation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from spandrel.architectures.Compact import Compact

import checkpoints
import data
import train_vae
from loop import Loop

SR_CONFIG = dict(num_in_ch=3, num_out_ch=3, num_feat=48, num_conv=12, upscale=4, act_type="prelu")


def _pairs(cache: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images, hi_res, meta = data.load(cache)
    fluent = [it for it in meta["items"] if it["style"] == "fluent" and it["split"] == "train"]
    lo = torch.from_numpy(images[[it["index"] for it in fluent]]).permute(0, 3, 1, 2).float() / 255
    hi = torch.from_numpy(hi_res[[it["hi_res"] for it in fluent]]).permute(0, 3, 1, 2).float() / 255
    vae, _ = train_vae.load_trained(cache)
    with torch.no_grad():
        rec = torch.cat([vae.decode(vae.encode(c * 2 - 1).latent_dist.mode()).sample for c in lo.split(128)])
    return lo, ((rec + 1) / 2).clamp(0, 1), hi


def train(cache: Path, minutes: float, steps: int | None = None, batch: int = 16, crop: int = 32,
          lr: float = 5e-4, lr_final: float | None = None) -> Path:
    """Train for ``minutes`` (or ``steps``), resuming from the checkpoint and saving it every few minutes;
    with ``lr_final`` the rate anneals along a cosine over the stretch (loop.stretch_rate)."""
    lo, lo_vae, hi = _pairs(cache)
    model = Compact(**SR_CONFIG)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    loop = Loop("sr", cache, model, opt, seed=2000, log_every=100, lr=lr, lr_final=lr_final)
    print(f"sr: {sum(p.numel() for p in model.parameters()) / 1e6:.3f}M parameters, {len(lo)} pairs")

    def train_step(gen: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(lo), (batch,), generator=gen)
        use_vae = (torch.rand(batch, generator=gen) < 0.5).view(-1, 1, 1, 1)
        src = torch.where(use_vae, lo_vae[idx], lo[idx])
        ys = torch.randint(0, 64 - crop + 1, (1,), generator=gen).item()
        xs = torch.randint(0, 64 - crop + 1, (1,), generator=gen).item()
        x = src[:, :, ys:ys + crop, xs:xs + crop]
        y = hi[idx][:, :, ys * 4:(ys + crop) * 4, xs * 4:(xs + crop) * 4]
        return F.l1_loss(model(x), y)

    return loop.run(train_step, minutes, steps)


def bicubic_gain(cache: Path) -> dict:
    """Held-out PSNR of the upscaler against plain bicubic on Fluent validation art (64 -> 256)."""
    images, hi_res, meta = data.load(cache)
    val = [it for it in meta["items"] if it["style"] == "fluent" and it["split"] == "val"][:64]
    lo = torch.from_numpy(images[[it["index"] for it in val]]).permute(0, 3, 1, 2).float() / 255
    hi = torch.from_numpy(hi_res[[it["hi_res"] for it in val]]).permute(0, 3, 1, 2).float() / 255
    model = load_trained(cache)
    with torch.no_grad():
        sr = model(lo).clamp(0, 1)
    bic = F.interpolate(lo, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)

    def psnr(a):
        return float(10 * np.log10(1 / F.mse_loss(a, hi).item()))

    return {"sr_psnr": psnr(sr), "bicubic_psnr": psnr(bic)}


def load_trained(cache: Path) -> Compact:
    state = checkpoints.load(cache / "ckpt" / "sr.pt")
    model = Compact(**SR_CONFIG)
    model.load_state_dict(state["model"])
    return model.eval().requires_grad_(False)

"""Stage 2: a small AutoencoderKL, 64x64 RGB <-> 16x16x4 latents."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

import checkpoints
import data
from loop import Loop

VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=64, layers_per_block=1,
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 64, 128), norm_num_groups=16,
)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss((a.clamp(-1, 1) + 1) / 2, (b.clamp(-1, 1) + 1) / 2).item()
    return 10 * math.log10(1 / max(mse, 1e-10))


def evaluate(vae: AutoencoderKL, x: torch.Tensor) -> float:
    vae.eval()
    with torch.no_grad():
        recs = [vae.decode(vae.encode(chunk).latent_dist.mode()).sample for chunk in x.split(64)]
    vae.train()
    return psnr(torch.cat(recs), x)


def train(cache: Path, minutes: float, steps: int | None = None, batch: int = 32, lr: float = 4e-4) -> Path:
    images, _, meta = data.load(cache)
    split = np.array([it["split"] for it in meta["items"]])
    train_x = to_tensor(images[split == "train"])
    val_x = to_tensor(images[split == "val"][:256])
    if len(val_x) == 0:  # tiny builds may hold out nothing
        val_x = train_x[:16]
    vae = AutoencoderKL(**VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    # a constant rate (lr=None: the loop leaves it alone, so a resumed optimiser keeps its saved rate)
    loop = Loop("vae", cache, vae, opt, seed=0, log_every=50, formats={"kl": ".1f"})
    print(f"vae: {sum(p.numel() for p in vae.parameters()) / 1e6:.2f}M parameters, {len(train_x)} train images")

    def train_step(gen: torch.Generator) -> tuple[torch.Tensor, dict]:
        x = train_x[torch.randint(0, len(train_x), (batch,), generator=gen)]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=gen)).sample
        kl = post.kl().mean()
        return F.l1_loss(rec, x) + 0.5 * F.mse_loss(rec, x) + 1e-6 * kl, {"kl": kl}

    def held_out() -> dict:
        val_psnr = evaluate(vae, val_x)
        print(f"vae: step {loop.step}, held-out PSNR {val_psnr:.2f} dB")
        return {"val_psnr": val_psnr}

    return loop.run(train_step, minutes, steps, evaluate=held_out)


def load_trained(cache: Path) -> tuple[AutoencoderKL, dict]:
    state = checkpoints.load(cache / "ckpt" / "vae.pt")
    vae = AutoencoderKL(**VAE_CONFIG)
    vae.load_state_dict(state["model"])
    vae.eval().requires_grad_(False)
    return vae, state

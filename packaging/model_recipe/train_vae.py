"""Stage 2: a small AutoencoderKL, 64x64 RGB <-> 16x16x4 latents."""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKL

import checkpoints
import data

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
    ckpt_path = cache / "ckpt" / "vae.pt"
    log = checkpoints.Log(cache / "logs" / "vae.jsonl")
    vae = AutoencoderKL(**VAE_CONFIG)
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    step, seconds = 0, 0.0
    state = checkpoints.load(ckpt_path)
    if state:
        vae.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, seconds = state["step"], state["seconds"]
        print(f"vae: resumed at step {step} ({seconds / 60:.1f} min so far)")
    print(f"vae: {sum(p.numel() for p in vae.parameters()) / 1e6:.2f}M parameters, {len(train_x)} train images")
    gen = torch.Generator().manual_seed(step)
    start, last_save = time.time(), time.time()
    target_steps = steps or 10**9
    while step < target_steps and (time.time() - start) < minutes * 60:
        idx = torch.randint(0, len(train_x), (batch,), generator=gen)
        x = train_x[idx]
        post = vae.encode(x).latent_dist
        rec = vae.decode(post.sample(generator=gen)).sample
        kl = post.kl().mean()
        loss = F.l1_loss(rec, x) + 0.5 * F.mse_loss(rec, x) + 1e-6 * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 50 == 0:
            elapsed = seconds + time.time() - start
            log.write(step=step, loss=loss.item(), kl=kl.item(), seconds=elapsed)
            print(f"vae step {step} loss {loss.item():.4f} kl {kl.item():.1f} {elapsed / 60:.1f} min", flush=True)
        if time.time() - last_save > 300:
            checkpoints.save(ckpt_path, model=vae.state_dict(), opt=opt.state_dict(), step=step,
                             seconds=seconds + time.time() - start)
            last_save = time.time()
    seconds += time.time() - start
    val_psnr = evaluate(vae, val_x)
    log.write(step=step, val_psnr=val_psnr, seconds=seconds)
    print(f"vae: step {step}, held-out PSNR {val_psnr:.2f} dB")
    checkpoints.save(ckpt_path, model=vae.state_dict(), opt=opt.state_dict(), step=step, seconds=seconds,
                     val_psnr=val_psnr)
    return ckpt_path


def load_trained(cache: Path) -> tuple[AutoencoderKL, dict]:
    state = checkpoints.load(cache / "ckpt" / "vae.pt")
    vae = AutoencoderKL(**VAE_CONFIG)
    vae.load_state_dict(state["model"])
    vae.eval().requires_grad_(False)
    return vae, state

"""Stage 5: the 4x upscaler, a compact SRVGGNet (the realesr-general-x4v3 architecture) that spandrel loads.

Trained on Fluent Emoji rendered at 256 px, from 64 px inputs that are half clean downscales and half the
same downscales passed through the trained VAE, which is what the upscaler sees after a generation.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from spandrel.architectures.Compact import Compact

import checkpoints
import data
import train_vae

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
    with ``lr_final`` the rate anneals along a cosine over the stretch (checkpoints.stretch_rate)."""
    lo, lo_vae, hi = _pairs(cache)
    ckpt_path = cache / "ckpt" / "sr.pt"
    log = checkpoints.Log(cache / "logs" / "sr.jsonl")
    model = Compact(**SR_CONFIG)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    step, seconds = 0, 0.0
    state = checkpoints.load(ckpt_path)
    if state:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        step, seconds = state["step"], state["seconds"]
        print(f"sr: resumed at step {step} ({seconds / 60:.1f} min so far)")
    print(f"sr: {sum(p.numel() for p in model.parameters()) / 1e6:.3f}M parameters, {len(lo)} pairs")
    gen = torch.Generator().manual_seed(2000 + step)
    start, last_save = time.time(), time.time()
    target = steps or 10**9
    first_step = step

    def save(elapsed: float) -> None:
        checkpoints.save(ckpt_path, model=model.state_dict(), opt=opt.state_dict(), step=step, seconds=elapsed)

    while step < target and (time.time() - start) < minutes * 60:
        idx = torch.randint(0, len(lo), (batch,), generator=gen)
        use_vae = (torch.rand(batch, generator=gen) < 0.5).view(-1, 1, 1, 1)
        src = torch.where(use_vae, lo_vae[idx], lo[idx])
        ys = torch.randint(0, 64 - crop + 1, (1,), generator=gen).item()
        xs = torch.randint(0, 64 - crop + 1, (1,), generator=gen).item()
        x = src[:, :, ys:ys + crop, xs:xs + crop]
        y = hi[idx][:, :, ys * 4:(ys + crop) * 4, xs * 4:(xs + crop) * 4]
        loss = F.l1_loss(model(x), y)
        done = ((step - first_step) / steps) if steps else (time.time() - start) / (minutes * 60)
        rate = checkpoints.stretch_rate(lr, lr_final, done)
        for group in opt.param_groups:
            group["lr"] = rate
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if step % 100 == 0:
            elapsed = seconds + time.time() - start
            log.write(step=step, loss=loss.item(), seconds=elapsed, lr=rate)
            print(f"sr step {step} loss {loss.item():.4f} lr {rate:.2e} {elapsed / 60:.1f} min", flush=True)
        if time.time() - last_save > 300:
            save(seconds + time.time() - start)
            last_save = time.time()
    seconds += time.time() - start
    save(seconds)
    print(f"sr: saved at step {step}")
    return ckpt_path


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

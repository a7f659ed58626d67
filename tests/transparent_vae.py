"""A see-through VAE for the tiny random models' image-to-image tests.

A tiny random VAE's decoder turns any latents into much the same noise, so a tiny model's picture says nothing
about how much of the start image survived. ``make_transparent(monkeypatch, vae, factor)`` replaces its encode
and decode (on the instance, undone by monkeypatch) with a plain average-pool and nearest-neighbour upsample, the
scaling and shift undone so that the pipeline's latents are the pooled pixels in [-1, 1]. The pipeline, the
scheduler, the noise and the random denoiser still run as they do: only what the VAE hides is made visible.
"""

from __future__ import annotations

import types

import torch


class _Latents:
    def __init__(self, latents: torch.Tensor):
        self.latents = latents

    def sample(self, generator=None) -> torch.Tensor:
        return self.latents

    def mode(self) -> torch.Tensor:
        return self.latents


def make_transparent(monkeypatch, vae, factor: int) -> None:
    config = vae.config
    scale = getattr(config, "scaling_factor", None) or 1.0
    shift = getattr(config, "shift_factor", None) or 0.0
    channels = config.latent_channels

    def encode(x, return_dict=True):
        pooled = torch.nn.functional.avg_pool2d(x, factor)
        latents = pooled[:, [k % 3 for k in range(channels)]] / scale + shift
        out = types.SimpleNamespace(latent_dist=_Latents(latents))
        return out if return_dict else (out.latent_dist,)

    def decode(z, return_dict=True, **kwargs):
        x = (z - shift) * scale
        rgb = torch.stack([x[:, c::3].mean(1) for c in range(3)], 1)
        rgb = torch.nn.functional.interpolate(rgb, scale_factor=factor, mode="nearest")
        return types.SimpleNamespace(sample=rgb) if return_dict else (rgb,)

    monkeypatch.setattr(vae, "encode", encode, raising=False)
    monkeypatch.setattr(vae, "decode", decode, raising=False)

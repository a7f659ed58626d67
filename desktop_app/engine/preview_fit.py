"""A preview decoder fitted to one model's VAE: a linear map from each latent pixel, its 3x3 neighbours and the
pixel's own channel products to the s x s x 3 patch of pixels the VAE decodes there (s: the VAE's scale
factor, 4 for the embedded model).

Why: even the embedded model's small VAE takes about half a denoising step to decode a preview, so previews
every step made generation ~1.5x slower on the CPU. This map costs well under a millisecond, keeps the full
output size and is fitted by least squares to what the VAE itself decodes from the x0 predictions the model
makes while generating (so it is right where previews are looked at). On the embedded model it comes within
~21 dB PSNR of the VAE's own decode (the 3x3 neighbours give +2.6 dB over one pixel, the products +0.9 dB);
shapes and layout match, colours are a little off.

Where a fitted map comes from, first found wins: ``<model folder>/preview/latent_to_rgb.safetensors``
(shipped with the model), then the user's cache (``<user folder>/cache/previews/<vae hash>.safetensors``).
``fit`` makes one (seconds on a CPU for the embedded model); ``python packaging/model_recipe/fit_preview.py
[MODEL] [--ship]`` fits and caches it, or writes it into the model folder.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from desktop_app.engine.preview import _to_pil, capture_x0

log = logging.getLogger(__name__)

SHIPPED = Path("preview") / "latent_to_rgb.safetensors"
KERNEL = 3  # each latent pixel with its 3x3 neighbours
FIT_PROMPTS = (
    "a red apple", "a smiling cat face", "a blue car", "a yellow star", "a green tree", "a slice of pizza",
    "a red heart", "a dog face", "a cup of coffee", "a rocket", "a sun with sunglasses", "a purple flower",
    "a house", "a birthday cake", "a snowman", "a fish",
)


class FittedPreview:
    """x0 (scaled latents) -> RGB, one linear map per output patch. ``weight``: (features, 3*s*s) where the
    features are the k*k neighbours' channels, the centre pixel's channel products, and 1."""

    def __init__(self, weight: torch.Tensor, scale: int, kernel: int = KERNEL):
        self.weight, self.scale, self.kernel = weight.float(), int(scale), int(kernel)

    def rgb(self, x0: torch.Tensor) -> torch.Tensor:
        """(n, 4, h, w) latents -> (n, 3, h*s, w*s) in [-1, 1] (roughly: not clamped)."""
        if self.weight.device != x0.device:
            self.weight = self.weight.to(x0.device)
        features = _features(x0.float(), self.kernel)
        n, _, h, w = x0.shape
        patches = (features @ self.weight).transpose(1, 2).reshape(n, -1, h, w)
        return F.pixel_shuffle(patches, self.scale)

    @torch.inference_mode()
    def __call__(self, x0: torch.Tensor, size: tuple[int, int]) -> Image.Image:
        return _to_pil((self.rgb(x0[:1])[0] + 1) / 2, size)


def _features(x0: torch.Tensor, kernel: int) -> torch.Tensor:
    """(n, c, h, w) -> (n, h*w, c*k*k + c*(c+1)/2 + 1)."""
    pad = kernel // 2
    padded = F.pad(x0, (pad, pad, pad, pad), mode="replicate")
    columns = F.unfold(padded, kernel).transpose(1, 2)  # (n, h*w, c*k*k)
    centre = x0.flatten(2).transpose(1, 2)  # (n, h*w, c)
    rows, cols = torch.triu_indices(x0.shape[1], x0.shape[1], device=x0.device)
    products = centre[..., rows] * centre[..., cols]
    ones = torch.ones(*columns.shape[:2], 1, dtype=columns.dtype, device=columns.device)
    return torch.cat([columns, products, ones], dim=2)


# ---- fitting --------------------------------------------------------------------------------------------


@torch.inference_mode()
def collect_x0(pipe, size: tuple[int, int], prompts=FIT_PROMPTS, steps: int = 10, batch: int = 4,
               seed: int = 0, guidance_scale: float = 5.0) -> torch.Tensor:
    """The x0 predictions after every step of a few generations (no VAE decode), as (n, 4, h, w)."""
    device = pipe.unet.device
    found: list[torch.Tensor] = []
    for start in range(0, len(prompts), batch):
        chunk = list(prompts[start:start + batch])
        generator = torch.Generator("cpu" if device.type == "mps" else str(device)).manual_seed(seed + start)
        with capture_x0(pipe.scheduler) as capture:
            def keep(pipeline, i, t, kwargs):
                if capture.latest is not None:
                    found.append(capture.latest.float().cpu().clone())
                return {}

            pipe(prompt=chunk, width=size[0], height=size[1], num_inference_steps=steps,
                 guidance_scale=guidance_scale, generator=generator, callback_on_step_end=keep,
                 output_type="latent")
    if not found:
        raise RuntimeError("the sampler gave no x0 predictions to fit a preview map to")
    return torch.cat(found)


@torch.inference_mode()
def vae_targets(vae, x0: torch.Tensor, batch: int = 16) -> torch.Tensor:
    """What the VAE decodes from each x0, in [-1, 1], (n, 3, H, W) float32 on the CPU."""
    config = vae.config
    out = []
    for start in range(0, len(x0), batch):
        latents = x0[start:start + batch].to(vae.device, vae.dtype) / config.scaling_factor
        if getattr(config, "shift_factor", None) is not None:
            latents = latents + config.shift_factor
        out.append(vae.decode(latents, return_dict=False)[0].float().clamp(-1, 1).cpu())
    return torch.cat(out)


def solve(x0: torch.Tensor, images: torch.Tensor, kernel: int = KERNEL, ridge: float = 1e-3) -> FittedPreview:
    """Least squares (with a little ridge) from latent neighbourhoods to the decoded patches."""
    scale = images.shape[-1] // x0.shape[-1]
    features = _features(x0.double(), kernel).flatten(0, 1)
    patches = F.pixel_unshuffle(images.double(), scale)  # (n, 3*s*s, h, w)
    targets = patches.flatten(2).transpose(1, 2).reshape(-1, patches.shape[1])
    gram = features.T @ features
    gram += ridge * torch.eye(gram.shape[0], dtype=gram.dtype) * gram.diagonal().mean()
    weight = torch.linalg.solve(gram, features.T @ targets)
    return FittedPreview(weight.float(), scale, kernel)


def psnr(preview: FittedPreview, x0: torch.Tensor, images: torch.Tensor) -> float:
    """How close the map comes to the VAE, in dB on [0, 1] pixels (higher is closer; 25+ looks alike)."""
    with torch.inference_mode():
        predicted = preview.rgb(x0).clamp(-1, 1)
    mse = float(((predicted - images) / 2).pow(2).mean())
    return round(float(10 * np.log10(1 / max(mse, 1e-12))), 2)


def fit(pipe, size: tuple[int, int], steps: int = 10, prompts=FIT_PROMPTS) -> tuple[FittedPreview, dict]:
    """Fit a map for this pipeline's VAE at ``size``. Returns it and a report (seconds, samples, PSNR on
    x0s held out of the fit)."""
    start = time.perf_counter()
    x0 = collect_x0(pipe, size, prompts=prompts, steps=steps)
    images = vae_targets(pipe.vae, x0)
    held_out = torch.arange(len(x0)) % 5 == 4
    check = solve(x0[~held_out], images[~held_out])
    preview = solve(x0, images)
    report = {"seconds": round(time.perf_counter() - start, 2), "latents": len(x0),
              "psnr_db_held_out": psnr(check, x0[held_out], images[held_out]),
              "kernel": preview.kernel, "scale": preview.scale}
    return preview, report


# ---- where fitted maps live -----------------------------------------------------------------------------


def vae_key(folder: Path) -> str | None:
    """A short hash of the VAE weights in a model folder: a cached map belongs to those weights. Size, head
    and tail of each file (the safetensors header names every tensor): milliseconds even for SDXL's VAE."""
    files = sorted((Path(folder) / "vae").glob("*.safetensors"))
    if not files:
        return None
    digest = hashlib.sha256()
    for path in files:
        size = path.stat().st_size
        digest.update(f"{path.name}:{size}".encode())
        with path.open("rb") as handle:
            digest.update(handle.read(1 << 20))
            handle.seek(max(0, size - (1 << 20)))
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def cache_path(key: str) -> Path:
    from desktop_app.paths import home

    return home() / "cache" / "previews" / f"{key}.safetensors"


def save(preview: FittedPreview, path: Path, key: str | None = None, report: dict | None = None) -> Path:
    from safetensors.torch import save as to_bytes

    from desktop_app.paths import write_atomically

    metadata = {"scale": str(preview.scale), "kernel": str(preview.kernel), "vae": key or "",
                "report": repr(report or {})}
    data = to_bytes({"weight": preview.weight.contiguous().cpu()}, metadata=metadata)  # a few kilobytes
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_atomically(path, lambda stream: stream.write(data))


def load(path: Path, key: str | None = None) -> FittedPreview | None:
    """The map in ``path``, or None when it is missing, unreadable, or made for other VAE weights."""
    from safetensors import safe_open

    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            weight = handle.get_tensor("weight")
        if key is not None and metadata.get("vae") not in ("", key):
            return None
        return FittedPreview(weight, int(metadata["scale"]), int(metadata.get("kernel", KERNEL)))
    except Exception as exc:  # noqa: BLE001 - a bad cache file only means: no fitted preview
        log.info("ignoring the preview map %s: %s", path, exc)
        return None


def find(folder: Path | None) -> FittedPreview | None:
    """The shipped map of a model folder, else the cached one for its VAE weights, else None."""
    if folder is None or not Path(folder).is_dir():
        return None
    key = vae_key(folder)
    found = load(Path(folder) / SHIPPED, key)
    if found is None and key is not None:
        found = load(cache_path(key), key)
    return found


def fit_and_cache(model, steps: int = 10) -> tuple[FittedPreview, dict]:
    """Fit a map for a LoadedModel at its default size and store it in the user's cache."""
    from desktop_app.engine.samplers import make_scheduler

    size = (int(model.defaults.get("width", 64)), int(model.defaults.get("height", 64)))
    saved = model.pipe.scheduler  # a run may be under way with its own sampler: give it back after
    model.pipe.scheduler = make_scheduler("DPM++ 2M", model.base_scheduler_config)  # a sampler that has x0
    try:
        preview, report = fit(model.pipe, size, steps=steps)
    finally:
        model.pipe.scheduler = saved
    key = vae_key(model.path)
    if key is not None:
        report["saved"] = str(save(preview, cache_path(key), key, report))
    return preview, report

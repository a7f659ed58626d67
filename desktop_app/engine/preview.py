"""Live previews: the model's predicted clean image (x0) after each step, not the noisy latent.

``capture_x0`` wraps ``scheduler.step`` for one run and keeps the newest x0: ``pred_original_sample`` where
the scheduler returns it (Euler, Euler a, DDIM), else ``model_outputs[-1]`` where that holds x0
(DPM-Solver++, and UniPC with predict_x0). A preview decoder turns x0 into a PIL image: the model's own VAE
when it is small (the embedded model's decodes a 16x16 latent in milliseconds), else the published linear
latent-to-RGB factors.
"""

from __future__ import annotations

import functools
import time
from contextlib import contextmanager

import numpy as np
import torch
from PIL import Image

# rows: the 4 latent channels; columns: R, G, B (ComfyUI latent_formats.py / InvokeAI step_callback.py)
SD1_FACTORS = [[0.3512, 0.2297, 0.3227], [0.3250, 0.4974, 0.2350], [-0.2829, 0.1762, 0.2721],
               [-0.2120, -0.2616, -0.7177]]
SD1_BIAS = [0.0, 0.0, 0.0]
SDXL_FACTORS = [[0.3651, 0.4232, 0.4341], [-0.2533, -0.0042, 0.1068], [0.1076, 0.1111, -0.0362],
                [-0.3165, -0.2492, -0.2188]]
SDXL_BIAS = [0.1084, -0.0175, -0.0011]
VAE_PREVIEW_MAX_PARAMS = 5_000_000  # a VAE this small decodes a preview in about the time of a step, or less
DEFAULT_PREVIEW_SHARE = 0.25  # previews may add at most a quarter to the denoising time


class X0Capture:
    """Holds the newest predicted clean latent (``latest``) while installed on a scheduler."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.latest: torch.Tensor | None = None

    def _x0(self, output, args: tuple = (), kwargs: dict | None = None) -> torch.Tensor | None:
        if _is_flow_matching(self.scheduler):  # x_t = (1 - sigma) x0 + sigma noise, v = noise - x0
            return _flow_x0(self.scheduler, args, kwargs or {})
        pred = getattr(output, "pred_original_sample", None)
        if pred is None:
            pred = getattr(output, "denoised", None)  # LCM names its x0 so
        if pred is not None:
            return pred
        outputs = getattr(self.scheduler, "model_outputs", None)
        if outputs and outputs[-1] is not None and _model_outputs_hold_x0(self.scheduler.config):
            return outputs[-1]
        return None


@contextmanager
def capture_x0(scheduler):
    """Wrap ``scheduler.step`` for the duration of the ``with`` block; the original step comes back after."""
    capture = X0Capture(scheduler)
    original = scheduler.step
    had_own = "step" in vars(scheduler)

    # wraps: diffusers inspects step's signature to decide whether to pass ``generator`` (ancestral
    # samplers draw their per-step noise from it); without it, Euler a used the global RNG and the same
    # seed gave different images whenever previews were on
    @functools.wraps(original)
    def step(*args, return_dict: bool = True, **kwargs):
        out = original(*args, return_dict=True, **kwargs)
        capture.latest = capture._x0(out, args, kwargs)
        return out if return_dict else out.to_tuple()

    scheduler.step = step
    try:
        yield capture
    finally:
        if had_own:
            scheduler.step = original
        else:
            del scheduler.step


def _is_flow_matching(scheduler) -> bool:
    return type(scheduler).__name__.startswith("FlowMatch")


def _flow_x0(scheduler, args: tuple, kwargs: dict) -> torch.Tensor | None:
    """The flow-matching x0 of the step just taken: x0 = x_t - sigma_t * v, with sigma_t the sigma the step
    started from (the step index has moved on by one)."""
    velocity = args[0] if len(args) > 0 else kwargs.get("model_output")
    sample = args[2] if len(args) > 2 else kwargs.get("sample")
    index = getattr(scheduler, "step_index", None)
    sigmas = getattr(scheduler, "sigmas", None)
    if velocity is None or sample is None or index is None or sigmas is None or not 0 < index <= len(sigmas):
        return None
    sigma = sigmas[index - 1].to(sample.device, torch.float32)
    return sample.float() - sigma * velocity.float()


def _model_outputs_hold_x0(config) -> bool:
    if "algorithm_type" in config:  # DPMSolverMultistep: only the ++ variants predict x0
        return config["algorithm_type"] in ("dpmsolver++", "sde-dpmsolver++")
    if "predict_x0" in config:  # UniPC
        return bool(config["predict_x0"])
    return False


class PreviewPacer:
    """Decides step by step whether to decode a preview, so that previews cost at most ``share`` of the time
    the steps themselves take. On a fast device that is every step; on a slow one every second or third.
    The first step always gets one (that is how the cost is learned). ``share=None``: every step.

    Measured on the CPU with the embedded model's architecture (64x64, 20 steps): a VAE preview every step
    made generation 1.45x slower; paced at 0.25, at most 1.25x.
    """

    def __init__(self, share: float | None = DEFAULT_PREVIEW_SHARE, clock=time.perf_counter):
        self.share, self.clock = share, clock
        self.step_seconds = self.preview_seconds = 0.0
        self._mark = clock()

    def step_done(self) -> bool:
        """Call when a step has finished; True when this step should get a preview."""
        now = self.clock()
        self.step_seconds += now - self._mark
        self._mark = now
        return self.share is None or self.preview_seconds <= self.share * self.step_seconds

    def decode(self, decoder, x0: torch.Tensor, size: tuple[int, int]) -> Image.Image:
        start = self.clock()
        try:
            return decoder(x0, size)
        finally:
            self._mark = self.clock()
            self.preview_seconds += self._mark - start


class VaePreview:
    """Decode x0 with the model's own (small) VAE: exactly what the final image will look like."""

    def __init__(self, vae):
        self.vae = vae

    @torch.inference_mode()
    def __call__(self, x0: torch.Tensor, size: tuple[int, int]) -> Image.Image:
        config = self.vae.config
        latents = x0[:1].to(self.vae.dtype) / config.scaling_factor
        if getattr(config, "shift_factor", None) is not None:
            latents = latents + config.shift_factor
        image = self.vae.decode(latents, return_dict=False)[0]
        return _to_pil((image[0].float() + 1) / 2, size)


class LinearPreview:
    """A fixed 4->3 linear map from scaled latents to RGB: almost free, blurry, colours close enough."""

    def __init__(self, factors, bias):
        self.factors = torch.tensor(factors, dtype=torch.float32)
        self.bias = torch.tensor(bias, dtype=torch.float32)

    @torch.inference_mode()
    def __call__(self, x0: torch.Tensor, size: tuple[int, int]) -> Image.Image:
        if self.factors.device != x0.device:
            self.factors, self.bias = self.factors.to(x0.device), self.bias.to(x0.device)
        rgb = torch.einsum("chw,cr->rhw", x0[0].float(), self.factors) + self.bias[:, None, None]
        return _to_pil((rgb + 1) / 2, size)


# families with published latent->RGB factors (SD 2.x shares SD 1.x's VAE and latent space)
LINEAR_FACTORS = {"sd1": (SD1_FACTORS, SD1_BIAS), "sd2": (SD1_FACTORS, SD1_BIAS),
                  "sdxl": (SDXL_FACTORS, SDXL_BIAS)}


def linear_factors(family: str) -> tuple:
    """The published latent -> RGB factors for ``family`` (SD 1.x's for a family without its own)."""
    from desktop_app.engine.families import for_family

    return LINEAR_FACTORS.get(family) or for_family(family).linear_preview or LINEAR_FACTORS["sd1"]


def make_decoder(pipe, family: str):
    """The cheapest faithful preview decoder for this pipeline: the VAE itself when it is small; the
    published linear factors for SD 1.x/2.x and SDXL; for other families (SD3, Flux, unknown latents) the
    full VAE decode, which PreviewPacer then runs only every few steps (its cost bounds how often). None
    without a VAE."""
    vae = getattr(pipe, "vae", None)
    if vae is not None and not hasattr(getattr(vae, "config", None), "scaling_factor"):
        return None  # a VAE normalised otherwise (Qwen-Image's, Flux.2's per-channel statistics): no preview yet
    if vae is not None and sum(p.numel() for p in vae.parameters()) < VAE_PREVIEW_MAX_PARAMS:
        return VaePreview(vae)
    channels = getattr(getattr(vae, "config", None), "latent_channels", 4)
    from desktop_app.engine.families import for_family

    factors = LINEAR_FACTORS.get(family) or for_family(family).linear_preview
    if factors is not None and len(factors[0]) == channels:
        return LinearPreview(*factors)
    return VaePreview(vae) if vae is not None else None


def _to_pil(image01: torch.Tensor, size: tuple[int, int]) -> Image.Image:
    image01 = torch.nan_to_num(image01.float()).clamp(0, 1)
    array = (image01.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
    pil = Image.fromarray(array)
    if pil.size != tuple(size):
        pil = pil.resize(tuple(size), Image.Resampling.BILINEAR)
    return pil

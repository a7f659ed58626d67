"""What each denoising step did, recorded from the scheduler's own ``step`` calls during a real run.

The pipeline calls ``scheduler.step(model_output, t, x)`` once per step with the guided prediction of the UNet.
``StepRecorder`` wraps that call (over ``preview.capture_x0``, which knows where each scheduler keeps its predicted
clean latent) and keeps, for every step, in the variance-preserving convention of DDPM (x_t = sqrt(ab) x0 +
sqrt(1 - ab) eps):

- ``x_t``: the noisy latent the UNet saw (``scale_model_input``: Euler-type samplers carry x_t scaled by
  sqrt(1 + sigma^2), the others carry it as it is);
- ``alpha_bar``: the signal level of that step (1 / (1 + sigma^2) where the scheduler walks sigmas, else its
  ``alphas_cumprod[t]``);
- ``eps``: the noise the model predicted, whatever it was trained to predict (epsilon, v or the sample);
- ``x0``: the predicted clean latent as the scheduler itself computed it (the formula only where it keeps none);
- the latent after the step; the last one is the result the VAE decodes.
"""

from __future__ import annotations

import functools
import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from desktop_app.engine.preview import capture_x0


@dataclass
class Step:
    index: int  # 0-based, in the order the scheduler ran them
    timestep: float
    alpha_bar: float
    x_t: np.ndarray  # (channels, height, width) of the first image of the batch, float32
    eps: np.ndarray
    x0: np.ndarray
    x0_from_scheduler: bool  # False: the scheduler keeps no x0, so it is the formula's


class StepRecorder:
    """The steps of one run, and the latent its last step left (``final``)."""

    def __init__(self, scheduler):
        self.scheduler = scheduler
        self.steps: list[Step] = []
        self.final: np.ndarray | None = None
        self.prediction_type = scheduler.config.get("prediction_type", "epsilon")

    def record(self, captured, args: tuple, kwargs: dict, out) -> None:
        model_output = args[0] if len(args) > 0 else kwargs["model_output"]
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        x_t, alpha_bar = self._pending
        model_output = model_output[:1].float()
        eps = noise_from_prediction(model_output, x_t, alpha_bar, self.prediction_type)
        x0 = captured.latest
        own = x0 is not None
        if not own:
            x0 = (x_t - math.sqrt(1 - alpha_bar) * eps) / math.sqrt(alpha_bar)
        self.steps.append(Step(len(self.steps), float(timestep), alpha_bar, _array(x_t), _array(eps),
                               _array(x0[:1]), own))
        self.final = _array(out.prev_sample[:1])

    def before(self, args: tuple, kwargs: dict) -> None:
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        sample = args[2] if len(args) > 2 else kwargs["sample"]
        # the UNet's input: the VP x_t (Euler-type samplers divide by sqrt(1 + sigma^2) here)
        x_t = self.scheduler.scale_model_input(sample, timestep)[:1].float()
        self._pending = (x_t, signal_level(self.scheduler, timestep))


@contextmanager
def record_steps(scheduler):
    """Record every ``scheduler.step`` inside the ``with`` block; the scheduler's own step comes back after."""
    recorder = StepRecorder(scheduler)
    with capture_x0(scheduler) as captured:
        inner = scheduler.step  # capture_x0's wrapper, which keeps the scheduler's x0

        @functools.wraps(inner)  # diffusers reads step's signature (generator, eta): keep it
        def step(*args, return_dict: bool = True, **kwargs):
            recorder.before(args, kwargs)
            out = inner(*args, return_dict=True, **kwargs)
            recorder.record(captured, args, kwargs, out)
            return out if return_dict else out.to_tuple()

        scheduler.step = step
        try:
            yield recorder
        finally:
            scheduler.step = inner  # capture_x0 then puts the original back


def signal_level(scheduler, timestep) -> float:
    """alpha-bar of the step about to run at ``timestep``: from the scheduler's current sigma where it walks
    sigmas with a step index, else from its training schedule's ``alphas_cumprod``."""
    sigmas, index = getattr(scheduler, "sigmas", None), getattr(scheduler, "step_index", None)
    if sigmas is not None and index is None and hasattr(scheduler, "_init_step_index"):
        scheduler._init_step_index(timestep)  # what its step() does first; idempotent
        index = scheduler.step_index
    if sigmas is not None and index is not None and index < len(sigmas):
        sigma = float(sigmas[index])
        return 1.0 / (1.0 + sigma * sigma)
    return float(scheduler.alphas_cumprod[int(timestep)])


def noise_from_prediction(output: torch.Tensor, x_t: torch.Tensor, alpha_bar: float, kind: str) -> torch.Tensor:
    """The predicted noise eps from what the model predicts (``kind``: its scheduler's prediction_type)."""
    a, s = math.sqrt(alpha_bar), math.sqrt(1 - alpha_bar)
    if kind == "v_prediction":  # v = a eps - s x0  =>  eps = a v + s x_t
        return a * output + s * x_t
    if kind == "sample":
        return (x_t - a * output) / max(s, 1e-8)
    return output


def _array(tensor: torch.Tensor) -> np.ndarray:
    return tensor[0].detach().float().cpu().numpy().astype(np.float32)

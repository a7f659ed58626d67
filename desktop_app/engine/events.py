"""Typed events the engine emits while it works. The worker turns them into Qt signals.

Images are PIL images: plain data the window can show without importing torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from desktop_app.engine.recipe import AnyRecipe
from desktop_app.errors import FailureKind


@dataclass(frozen=True)
class StageStarted:
    """A pipeline stage began: "load", "text", "noise", "denoise", "decode", "upscale", "hires", "save".

    On CUDA the "load" detail ends with the memory plan chosen for the model ("...; memory plan: model offload
    (23.8 GB of weights, ...)"); a run whose plan offloads tells it again in a "load" stage of its own, which
    is also a line of the recipe's notices (and the recipe's ``memory_plan`` names the plan)."""

    stage: str
    detail: str = ""


@dataclass(frozen=True)
class Progress:
    """One step of a stage: "denoise" (the base's steps, and the refiner's, counted on across the switch),
    "hires" (the hires fix's img2img pass) or "upscale" (one per tile)."""

    step: int  # 1-based: step ``step`` of ``total`` has finished
    total: int
    preview: Any  # PIL.Image.Image of the predicted clean image, or None
    elapsed: float  # seconds since the generation started
    stage: str = "denoise"


@dataclass(frozen=True)
class Finished:
    """The job's result: returned by Engine.run / Engine.upscale, and emitted as their terminal event."""

    images: list  # PIL images, one per batch item (upscaled when upscale was asked)
    seeds: list[int]
    recipe: AnyRecipe  # Recipe (a generation) or UpscaleRecipe (recipe.job == "upscale"); to_dict() for files
    timings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    """The terminal event of a job that raised (the exception still propagates to the caller)."""

    kind: FailureKind
    message: str  # the exception's own message when kind.readable, else "Type: message" on one line


@dataclass(frozen=True)
class Cancelled:
    """The terminal event of a job that was cancelled (it returns None)."""


Event = StageStarted | Progress | Finished | Failed | Cancelled
Emit = Callable[[Event], None]

"""Typed events the engine emits while it works. The worker turns them into Qt signals.

Images are PIL images: plain data the window can show without importing torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class StageStarted:
    """A pipeline stage began: "load", "text", "noise", "denoise", "decode", "upscale", "save"."""

    stage: str
    detail: str = ""


@dataclass(frozen=True)
class Progress:
    step: int  # 1-based: step ``step`` of ``total`` has finished
    total: int
    preview: Any  # PIL.Image.Image of the predicted clean image, or None
    elapsed: float  # seconds since the generation started
    stage: str = "denoise"


@dataclass(frozen=True)
class Finished:
    images: list  # PIL images, one per batch item (upscaled when upscale was asked)
    seeds: list[int]
    recipe: dict  # the request as a dict plus model, device, dtype, seeds, timings
    timings: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Failed:
    kind: str  # "bad_input", "model", "out_of_memory", "internal"
    message: str


@dataclass(frozen=True)
class Cancelled:
    pass


Event = StageStarted | Progress | Finished | Failed | Cancelled
Emit = Callable[[Event], None]

"""No garbage-collector pauses while the engine's libraries import.

Importing the engine (torch, diffusers, transformers, scipy) creates about half a million Python objects. Each
time the cyclic collector's oldest generation runs meanwhile, it walks all of them while holding the GIL:
pauses of 0.1-0.4 s each on a small CPU, and about seven of them. In the window that freezes the UI thread
while the worker warms up; on the command line it adds to the time to the first image (benchmark sections 3
and 4). So the collector is off from the first engine import until ``release()``, and what the imports made
is then frozen (``gc.freeze``): modules, classes and functions live for the whole process anyway, so later
collections skip them and stay short.

``generate.py`` imports this module before torch and calls ``release()`` at its end; ``preload`` does the
same around the lazy imports that loading a model would otherwise make.
"""

from __future__ import annotations

import gc
from contextlib import contextmanager

_was_enabled = gc.isenabled()
gc.disable()


def release() -> None:
    """Freeze what has been imported so far and turn the collector back on (if it was on)."""
    gc.freeze()
    if _was_enabled:
        gc.enable()


@contextmanager
def paused():
    """The collector off for the block; what the block imported frozen after it. For imports only: objects
    frozen here are never collected as cycles."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def preload(embedded: bool) -> None:
    """Import what loading a model imports lazily (the pipeline classes, the text encoder, spandrel), with the
    collector paused: the model's own objects are then made with the collector on and stay collectable."""
    with paused():
        import diffusers
        import transformers

        diffusers.StableDiffusionPipeline, diffusers.UNet2DConditionModel, diffusers.AutoencoderKL  # noqa: B018
        if embedded:
            transformers.BertModel, transformers.AutoTokenizer  # noqa: B018
        else:
            diffusers.DiffusionPipeline, transformers.CLIPTextModel, transformers.CLIPTokenizer  # noqa: B018
        try:
            import spandrel  # noqa: F401
        except ImportError:
            pass

"""Typed recipes for the fake engines and results of the tests (the real contract: Finished.recipe is a Recipe or
an UpscaleRecipe, engine/recipe.py). Torch-free, so the window's tests can use it."""

from __future__ import annotations

from desktop_app.engine.recipe import Recipe, UpscaleRecipe
from desktop_app.engine.request import GenerationRequest, UpscaleRequest


def generation_recipe(request: GenerationRequest, seeds=(), **changes) -> Recipe:
    """What the engine would record for ``request`` run on the CPU with ``seeds``; ``changes`` set other fields
    (model_name, timings, notices ...)."""
    seeds = tuple(seeds)
    values = dict(request=request.with_seed(seeds[0]) if seeds else request, seeds=seeds, model_name="fake",
                  device="cpu", dtype="float32", app_version="0.0.test", family="sd15",
                  output_size=(request.width, request.height))
    return Recipe(**(values | changes))


def upscale_recipe(request: UpscaleRequest, input_size: tuple[int, int], scale: float = 4.0,
                   **changes) -> UpscaleRecipe:
    """What the engine would record for upscaling ``request.source`` (a path) of ``input_size`` ``scale`` times."""
    output = (round(input_size[0] * scale), round(input_size[1] * scale))
    upscaler = {"name": request.model, "file": "model.safetensors", "sha256": "0123456789", "scale": int(scale)}
    values = dict(input=str(request.source), input_size=tuple(input_size), output_size=output, mode="RGB",
                  scale=float(scale), tile=request.tile, tiles=1, upscaler=upscaler, device="cpu",
                  dtype="float32", app_version="0.0.test")
    return UpscaleRecipe(**(values | changes))

"""Engine.run on the tiny embedded model: stages, shapes, seeds, determinism, samplers, recipes, upscaling."""

from __future__ import annotations

import json
import weakref

import numpy as np
import pytest

from desktop_app.engine.events import Finished, StageStarted
from desktop_app.engine.recipe import Recipe
from desktop_app.engine.request import SAMPLERS, GenerationRequest


def pixels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_stages_in_order_and_a_finished_result(generate, make_request):
    result, events = generate(make_request())
    assert isinstance(result, Finished)
    stages = [s for s in events.stages if s != "load"]
    assert stages == ["text", "noise", "denoise", "decode"]
    assert [p.step for p in events.progress] == [1, 2, 3]
    assert all(p.total == 3 for p in events.progress)
    text = next(e for e in events.of(StageStarted) if e.stage == "text")
    assert text.detail == '["a", "red", "cat"]'  # MiniLM's word pieces, special tokens left out
    assert set(result.timings) >= {"load", "text", "noise", "denoise", "decode", "total"}


def test_same_seed_same_pixels(generate, make_request):
    first, _ = generate(make_request(seed=7))
    second, _ = generate(make_request(seed=7))
    assert np.array_equal(pixels(first.images[0]), pixels(second.images[0]))


def test_different_seeds_differ(generate, make_request):
    first, _ = generate(make_request(seed=7))
    second, _ = generate(make_request(seed=8))
    assert not np.array_equal(pixels(first.images[0]), pixels(second.images[0]))


@pytest.mark.parametrize("width,height", [(32, 32), (48, 24), (16, 64)])
def test_image_size_follows_the_request(generate, make_request, width, height):
    result, _ = generate(make_request(width=width, height=height))
    assert result.images[0].size == (width, height)


def test_batch_gives_one_image_per_seed_and_each_is_reproducible_alone(generate, make_request):
    result, _ = generate(make_request(seed=100, batch_size=3))
    assert len(result.images) == 3 and result.seeds == [100, 101, 102]
    assert result.recipe.seeds == (100, 101, 102) and result.recipe.seed == 100
    assert result.recipe.to_dict()["seeds"] == [100, 101, 102] and result.recipe.to_dict()["seed"] == 100
    alone, _ = generate(make_request(seed=101))
    # batched convolutions may round differently from a single image, by a level at most
    assert np.abs(pixels(alone.images[0]) - pixels(result.images[1])).max() <= 2
    assert not np.array_equal(pixels(result.images[0]), pixels(result.images[1]))


def test_seeds_wrap_at_the_top_of_the_range(generate, make_request):
    result, _ = generate(make_request(seed=2**32 - 1, batch_size=2))
    assert result.seeds == [2**32 - 1, 0]


def test_a_random_seed_is_drawn_reported_and_regenerates_the_image(generate, make_request):
    result, events = generate(make_request(seed=None))
    seed = result.seeds[0]
    assert 0 <= seed < 2**32 and result.recipe.seed == seed and result.recipe.request.seed == seed
    assert str(seed) in next(e.detail for e in events.of(StageStarted) if e.stage == "noise")
    again, _ = generate(GenerationRequest.from_dict(result.recipe.to_dict()))
    assert np.array_equal(pixels(result.images[0]), pixels(again.images[0]))


def test_recipe_holds_the_request_model_device_and_timings(generate, make_request, tiny_model_dir):
    request = make_request(negative_prompt="blurry", guidance_scale=3.0, sampler="Euler")
    result, _ = generate(request)
    recipe = result.recipe
    assert isinstance(recipe, Recipe) and recipe.job == "generate"
    assert recipe.request == request.with_seed(result.seeds[0])
    assert recipe.model_name == "tiny-embedded" and recipe.family == "embedded"
    assert recipe.device == "cpu" and recipe.dtype == "float32" and recipe.app_version
    assert {"load", "text", "denoise", "decode", "total"} <= set(recipe.timings)
    # the dict a PNG keeps: the request's fields at the top level, then what the engine recorded (no more)
    data = recipe.to_dict()
    for key, value in request.to_dict().items():
        if key != "seed":
            assert data[key] == value, key
    recorded = {"seeds", "model_name", "family", "device", "dtype", "app_version", "timings", "output_size",
                "memory_plan"}
    assert set(data) - {"model_hash"} == set(request.to_dict()) | recorded
    assert data["timings"] == recipe.timings and data["output_size"] == [32, 32]
    assert json.loads(json.dumps(data)) == data


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_runs_and_previews(generate, make_request, sampler):
    result, events = generate(make_request(sampler=sampler))
    array = pixels(result.images[0])
    assert array.shape == (32, 32, 3) and np.isfinite(array).all()
    # Heun and DPM++ SDE evaluate the model twice a step: their callbacks count model calls
    assert len(events.progress) == events.progress[-1].total >= 3
    assert all(p.preview is not None and p.preview.size == (32, 32) for p in events.progress)


def test_guidance_off_and_a_negative_prompt_both_run(generate, make_request):
    plain, _ = generate(make_request(guidance_scale=1.0))
    negative, _ = generate(make_request(negative_prompt="green"))
    guided, _ = generate(make_request())
    assert not np.array_equal(pixels(negative.images[0]), pixels(guided.images[0]))
    assert not np.array_equal(pixels(plain.images[0]), pixels(guided.images[0]))


def test_embedded_upscaler_quadruples_the_size(generate, make_request):
    result, events = generate(make_request(upscale="default", batch_size=2))
    assert [image.size for image in result.images] == [(128, 128), (128, 128)]
    assert "upscale" in events.stages and "upscale" in result.timings
    assert result.recipe.output_size == (128, 128) and result.recipe.to_dict()["output_size"] == [128, 128]


def test_an_upscaler_file_can_be_named(generate, make_request, tiny_model_dir):
    result, _ = generate(make_request(upscale=str(tiny_model_dir / "upscaler" / "model.safetensors")))
    assert result.images[0].size == (128, 128)


def test_the_engine_keeps_one_model_and_frees_the_old_one(generate, make_request, engine, tiny_sd_dir):
    generate(make_request())
    old = weakref.ref(engine.model.pipe.unet)
    _, events = generate(make_request())
    assert "load" not in events.stages  # same model: no reload
    result, events = generate(make_request(model=str(tiny_sd_dir)))
    assert events.stages[0] == "load" and engine.model.family == "custom"
    assert result.images[0].size == (32, 32)
    assert old() is None
    assert events.of(StageStarted)[1].detail == '["a</w>", "red</w>", "cat</w>"]'  # CLIP's BPE tokens

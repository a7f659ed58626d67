"""The typed recipe (engine/recipe.py): the one place a recipe becomes a dict and comes back."""

from __future__ import annotations

import json

import pytest

from desktop_app.engine.recipe import Recipe, UpscaleRecipe, recipe_from_dict
from desktop_app.engine.request import GenerationRequest, LoraChoice
from desktop_app.errors import RequestError


def a_recipe(**changes) -> Recipe:
    request = GenerationRequest(prompt="a red fox", seed=7, steps=12, loras=(LoraChoice("ink", 0.5),))
    values = dict(request=request, seeds=(7, 8), model_name="tiny", device="cpu", dtype="float32",
                  app_version="1.2.3", family="sd15", timings={"total": 1.5}, output_size=(256, 256),
                  model_hash="abcdef1234", notices=("decode redone in float32",))
    return Recipe(**(values | changes))


def test_a_generation_recipe_survives_json_and_back():
    recipe = a_recipe()
    data = json.loads(json.dumps(recipe.to_dict()))
    # the request's fields sit at the top level: a recipe read back from a file is a request again
    assert data["prompt"] == "a red fox" and data["steps"] == 12 and data["seed"] == 7
    assert data["loras"] == [{"name": "ink", "weight": 0.5}]
    assert GenerationRequest.from_dict(data) == recipe.request
    again = recipe_from_dict(data)
    assert again == recipe
    assert (again.prompt, again.seed, again.total_seconds, again.job) == ("a red fox", 7, 1.5, "generate")


def test_empty_records_are_left_out_of_the_dict():
    data = a_recipe(model_hash=None, notices=(), output_size=None).to_dict()
    assert not {"model_hash", "notices", "output_size", "hires", "upscaler", "refiner_model"} & set(data)


def test_an_upscale_recipe_survives_json_and_back():
    recipe = UpscaleRecipe(input="cat.png", input_size=(64, 48), output_size=(256, 192), mode="RGB", scale=4.0,
                           tile=512, tiles=1, upscaler={"name": "default", "scale": 4}, device="cpu",
                           dtype="float32", app_version="1.2.3", timings={"total": 0.25})
    data = json.loads(json.dumps(recipe.to_dict()))
    assert data["job"] == "upscale" and data["output_size"] == [256, 192]
    again = recipe_from_dict(data)
    assert again == recipe and again.upscaler_name == "default" and again.prompt == "" and again.seed is None


def test_a_recipe_with_a_bad_field_names_it():
    data = a_recipe().to_dict() | {"steps": 0}
    with pytest.raises(RequestError, match="steps"):
        recipe_from_dict(data)


def test_lora_hashes_are_kept_empty_when_loras_were_applied_and_left_out_when_none_were():
    assert "lora_hashes" not in a_recipe().to_dict()
    assert a_recipe(lora_hashes={}).to_dict()["lora_hashes"] == {}
    for recipe in (a_recipe(), a_recipe(lora_hashes={}), a_recipe(lora_hashes={"ink": "0123456789"})):
        assert recipe_from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe


def test_an_upscale_recipe_of_an_image_in_memory_starts_with_its_job():
    recipe = UpscaleRecipe(input=None, input_size=(8, 8), output_size=(32, 32), mode="RGBA", scale=4.0, tile=0,
                           tiles=1, upscaler={"name": "default"}, device="cpu", dtype="float32", app_version="1")
    data = recipe.to_dict()
    assert list(data)[:2] == ["job", "input"] and data["input"] is None
    assert recipe_from_dict(json.loads(json.dumps(data))) == recipe


# ---- the engine's recipe: the same dict, key for key and in order, as the engine wrote before the type --------


def dict_as_before(request, model, seeds, timings, images, extra) -> dict:
    """run_steps.make_recipe and GenerationRun.finished as they were when the recipe was a dict."""
    import desktop_app
    from desktop_app.models.model_hash import model_hash

    recipe = request.to_dict()
    recipe.update(seed=seeds[0], seeds=list(seeds), model_name=model.display_name, family=model.family,
                  device=str(model.device), dtype=str(model.dtype).removeprefix("torch."),
                  app_version=desktop_app.__version__, timings={k: round(v, 4) for k, v in timings.items()})
    if images:
        recipe["output_size"] = list(images[0].size)
    digest = model_hash(model.path)
    if digest:
        recipe["model_hash"] = digest
    return recipe | extra


@pytest.mark.parametrize("extra", [
    {},
    {"lora_hashes": {}},
    {"lora_hashes": {"ink": "0123456789"}, "memory_fallbacks": ["vae_tiling"], "notices": ["out of memory"],
     "refiner_model": {"name": "r", "switch": 0.8, "steps": [4, 1]},
     "hires": {"upscaler": "Lanczos", "size": [64, 64], "steps": 2, "scale": 2.0, "strength": 0.5},
     "upscaler": {"name": "default", "file": "model.safetensors", "sha256": "0123456789", "scale": 4}},
], ids=["plain", "loras-without-hashes", "every-record"])
@pytest.mark.parametrize("weights", [True, False], ids=["one-file", "no-weights"])
def test_the_engine_writes_the_same_dict_as_before(tmp_path, extra, weights):
    import torch
    from PIL import Image
    from types import SimpleNamespace

    from desktop_app.engine.run_steps import make_recipe

    path = tmp_path / "m.safetensors"
    if weights:
        path.write_bytes(b"not really weights, but hashed all the same")
    model = SimpleNamespace(display_name="tiny", family="sd15", device=torch.device("cpu"), dtype=torch.float16,
                            path=path)
    request = GenerationRequest(prompt="a red fox", seed=None, batch_size=2, loras=(LoraChoice("ink", 0.5),))
    seeds, timings, images = [41, 42], {"load": 0.123456, "total": 1.0000049}, [Image.new("RGB", (64, 48))] * 2
    records = {key: tuple(value) if key in ("memory_fallbacks", "notices") else value
               for key, value in extra.items()}
    recipe = make_recipe(request, model, seeds, timings, images, **records)
    before = dict_as_before(request, model, seeds, timings, images, extra)
    assert list(recipe.to_dict().items()) == list(before.items())
    assert ("model_hash" in before) is weights
    assert recipe.request.seed == 41 and recipe.seeds == (41, 42)  # the request, as its first image is re-run

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

"""Images other tools made: their recipes read into our shape (what ``info`` prints and the window's form takes).

The images are crafted as each tool writes them (tests/image_metadata_files.py); the sd-parsers library reads
the same files the same way (checked when writing these tests).
"""

from __future__ import annotations

import json

import pytest
from image_metadata_files import (A1111_TEXT, COMFYUI_PROMPT, COMFYUI_WORKFLOW, FOOOCUS, INVOKEAI_V3_METADATA,
                                  NOVELAI_CHUNKS, comfyui_png, dream_png, fooocus_png, invokeai_png, novelai_png,
                                  png_with_text, sd_metadata_png, stealth_png)
from PIL import Image

from desktop_app.studio import exif_recipe, foreign_recipes, png_recipe


def read(path):
    return png_recipe.read_recipe(path)


def test_fooocus_json_is_read_as_fields_not_shown_as_the_prompt(tmp_path):
    found = read(fooocus_png(tmp_path / "fooocus.png"))
    request = found["request"]
    assert found["source"] == "fooocus"
    assert request["prompt"] == "a red fox in the snow" and request["negative_prompt"] == "unrealistic"
    assert (request["width"], request["height"]) == (1152, 896)
    assert request["steps"] == 30 and request["guidance_scale"] == 4.0 and request["seed"] == 1234567890
    assert request["sampler"] == "DPM++ 2M SDE Karras"
    assert request["loras"] == [{"name": "sd_xl_offset_example-lora_1.0.safetensors", "weight": 0.1}]
    assert found["info"]["model_name"] == "juggernautXL_v8Rundiffusion.safetensors"
    text = png_recipe.describe(found)
    assert "Prompt: a red fox in the snow\n" in text and "{" not in text.splitlines()[0]
    assert text.endswith("Recipe: Fooocus JSON")


def test_fooocus_json_in_a_jpeg_user_comment(tmp_path):
    path = tmp_path / "fooocus.jpg"
    Image.new("RGB", (8, 8)).save(path, exif=exif_recipe.exif_with_comment(json.dumps(FOOOCUS)))
    found = read(path)
    assert found["source"] == "fooocus" and found["request"]["prompt"] == "a red fox in the snow"


def test_json_parameters_from_no_known_tool_is_no_recipe_not_a_prompt(tmp_path):
    path = png_with_text(tmp_path / "odd.png", {"parameters": json.dumps({"positive": "x", "cfg": 3})})
    with pytest.raises(png_recipe.NoRecipe, match="JSON"):
        read(path)


def test_comfyui_prompt_graph(tmp_path):
    found = read(comfyui_png(tmp_path / "comfy.png"))
    request = found["request"]
    assert found["source"] == "comfyui"
    assert request["prompt"] == "beautiful scenery nature glass bottle landscape"
    assert request["negative_prompt"] == "text, watermark"
    assert request["steps"] == 20 and request["guidance_scale"] == 8.0 and request["seed"] == 156680208
    assert request["sampler"] == "Euler" and (request["width"], request["height"]) == (512, 768)
    assert request["loras"] == [{"name": "add_detail.safetensors", "weight": 0.8}]
    assert found["info"]["model_name"] == "v1-5-pruned-emaonly.safetensors"
    assert png_recipe.describe(found).endswith("Recipe: ComfyUI prompt graph")


def test_comfyui_prompts_through_combiners_primitives_and_a_link_cycle(tmp_path):
    graph = json.loads(json.dumps(COMFYUI_PROMPT))
    graph["3"]["inputs"]["positive"] = ["20", 0]
    graph["3"]["inputs"]["seed"] = ["22", 0]
    graph["20"] = {"class_type": "ConditioningCombine",
                   "inputs": {"conditioning_1": ["6", 0], "conditioning_2": ["21", 0], "loop": ["20", 0]}}
    graph["21"] = {"class_type": "CLIPTextEncode", "inputs": {"text": ["23", 0], "clip": ["4", 1]}}
    graph["22"] = {"class_type": "PrimitiveNode", "inputs": {"seed": 99}}
    graph["23"] = {"class_type": "PrimitiveString", "inputs": {"value": "golden hour"}}
    graph["24"] = {"class_type": "Loop", "inputs": {"a": ["25", 0]}}
    graph["25"] = {"class_type": "Loop", "inputs": {"a": ["24", 0]}}
    found = read(comfyui_png(tmp_path / "combined.png", graph))
    assert found["request"]["prompt"] == "beautiful scenery nature glass bottle landscape, golden hour"
    assert found["request"]["seed"] == 99


def test_comfyui_without_a_prompt_graph_says_so(tmp_path):
    path = png_with_text(tmp_path / "wf.png", {"workflow": json.dumps(COMFYUI_WORKFLOW)})
    with pytest.raises(png_recipe.NoRecipe, match="ComfyUI"):
        read(path)


@pytest.mark.parametrize("variant", ["invokeai_metadata", "invokeai_v3", "sd-metadata", "Dream"])
def test_invokeai_three_variants(tmp_path, variant):
    path = tmp_path / f"{variant}.png"
    if variant == "invokeai_metadata":
        found = read(invokeai_png(path))
        expected = {"prompt": "a cozy cabin in the woods", "negative_prompt": "people", "steps": 30,
                    "seed": 3141592, "guidance_scale": 7.5, "sampler": "DPM++ 2M Karras",
                    "width": 768, "height": 512}
        assert found["request"]["loras"] == [{"name": "detail-tweaker", "weight": 0.75}]
        assert found["info"]["model_name"] == "stable-diffusion-v1-5"
    elif variant == "invokeai_v3":
        found = read(invokeai_png(path, INVOKEAI_V3_METADATA))
        expected = {"prompt": "a cozy cabin", "steps": 25, "seed": 42, "sampler": "Euler a"}
        assert found["request"]["loras"] == [{"name": "pixel-art", "weight": 0.5}]
    elif variant == "sd-metadata":
        found = read(sd_metadata_png(path))
        expected = {"prompt": "a photo of a cat", "negative_prompt": "blurry, low quality", "steps": 50,
                    "seed": 3357757885, "guidance_scale": 7.5, "width": 512, "height": 512}
        assert found["info"]["model_name"] == "stable-diffusion-1.5"
    else:
        found = read(dream_png(path))
        expected = {"prompt": "a photo of a dog", "negative_prompt": "cartoon", "steps": 40, "seed": 2718,
                    "guidance_scale": 8.5, "sampler": "Euler a", "width": 512, "height": 640}
    assert found["source"] == "invokeai"
    assert {key: found["request"].get(key) for key in expected} == expected


def test_novelai(tmp_path):
    found = read(novelai_png(tmp_path / "nai.png"))
    request = found["request"]
    assert found["source"] == "novelai"
    assert request["prompt"] == "masterpiece, a girl reading in a library"
    assert request["negative_prompt"] == "lowres, bad anatomy"
    assert request["steps"] == 28 and request["guidance_scale"] == 5.0 and request["seed"] == 1234567
    assert (request["width"], request["height"]) == (832, 1216) and request["sampler"] == "Euler a"
    assert found["info"]["model_name"] == "NovelAI Diffusion V3" and found["info"]["model_hash"] == "4BDE2A90"


@pytest.mark.parametrize("signature", ["stealth_pnginfo", "stealth_pngcomp", "stealth_rgbinfo", "stealth_rgbcomp"])
def test_a1111_stealth_metadata_in_the_pixels(tmp_path, signature):
    found = read(stealth_png(tmp_path / "stealth.png", A1111_TEXT, signature))
    assert found["source"] == "parameters" and found["request"]["prompt"] == "a lighthouse at dusk"
    assert found["request"]["steps"] == 24 and found["request"]["seed"] == 777
    assert "pixels" in found["info"]["stored"]


def test_novelai_stealth_json_in_the_alpha_channel(tmp_path):
    found = read(stealth_png(tmp_path / "nai.png", json.dumps(NOVELAI_CHUNKS), "stealth_pngcomp"))
    assert found["source"] == "novelai" and found["request"]["steps"] == 28


def test_damaged_stealth_payloads_are_no_recipe(tmp_path):
    path = stealth_png(tmp_path / "bad.png", "x" * 40, "stealth_pnginfo", size=(24, 24))
    with Image.open(path) as image:  # claim a payload longer than the image holds
        image = image.copy()
    pixels = image.load()
    for index in range(120, 152):  # the 32 length bits: all ones
        x, y = divmod(index, 24)
        r, g, b, a = pixels[x, y]
        pixels[x, y] = (r, g, b, a | 1)
    image.save(path)
    with pytest.raises(png_recipe.NoRecipe, match="damaged"):
        read(path)


def test_our_own_png_is_still_ours_and_a1111_text_still_a1111(tmp_path):
    recipe = {"prompt": "a red apple", "steps": 4, "width": 32, "height": 32, "seed": 3, "sampler": "Euler",
              "guidance_scale": 5.0}
    ours = png_recipe.save_png(Image.new("RGB", (32, 32)), tmp_path / "ours.png", recipe, seed=3)
    assert read(ours)["source"] == "desktop-app"
    a1111 = png_with_text(tmp_path / "a.png", {"parameters": A1111_TEXT})
    assert read(a1111)["source"] == "parameters"


def test_recipe_chunk_with_wrong_types_falls_back_to_the_parameters_text(tmp_path):
    path = png_with_text(tmp_path / "mixed.png", {"recipe": json.dumps({"prompt": 5, "steps": [1]}),
                                                  "parameters": A1111_TEXT})
    found = read(path)
    assert found["source"] == "parameters" and found["request"]["steps"] == 24


@pytest.mark.parametrize("recipe, problem", [
    ({"prompt": 5}, "prompt is a number"), ({"prompt": "x", "steps": [1]}, "steps is a list"),
    ({"prompt": "x", "steps": 4.5}, "steps"), ({"prompt": "x", "guidance_scale": "7"}, "guidance_scale"),
    ({"prompt": "x", "seed": True}, "seed"), ({"prompt": "x", "loras": [{"name": 3}]}, "LoRA"),
    ({"prompt": "x", "loras": "a"}, "loras"), ([1, 2], "not a JSON object"),
])
def test_recipe_problem_names_the_field(recipe, problem):
    assert problem in png_recipe.recipe_problem(recipe)


def test_readers_never_raise_on_wrong_types():
    notes: list = []
    hostile = {"parameters": json.dumps({"prompt": "x", "steps": [1], "seed": {"a": 1}, "resolution": 5,
                                         "lora_combined_1": 3, "loras": "x"}),
               "prompt": json.dumps({"1": {"class_type": "KSampler", "inputs": {"positive": [["x"], 0],
                                                                                "seed": [None, 0], "model": 5}}}),
               "invokeai_metadata": json.dumps({"model": [1], "loras": [5, {"lora": 3}], "width": "x"}),
               "sd-metadata": json.dumps({"image": {"prompt": 5}}), "Dream": '"',
               "Comment": json.dumps({"steps": "many", "sampler": 3}), "Software": "NovelAI"}
    for reader in (foreign_recipes.fooocus, *foreign_recipes.READERS):
        found = reader(hostile, notes)
        assert found is None or isinstance(found["request"]["prompt"], str)

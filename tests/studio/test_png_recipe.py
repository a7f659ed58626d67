"""The recipe in the PNG: written by us, read back by us; AUTOMATIC1111's text read back too."""

from __future__ import annotations


import pytest
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from desktop_app.studio import png_recipe
from desktop_app.engine.request import GenerationRequest

RECIPE = GenerationRequest(
    prompt="a red apple, studio light", negative_prompt="blurry, text", width=64, height=48, steps=12,
    guidance_scale=6.5, sampler="Euler a", seed=4242, batch_size=2, model="default", upscale="default",
).to_dict() | {"seeds": [4242, 4243], "model_name": "emoji-mini", "model_hash": "abcdef0123",
               "device": "cpu", "dtype": "float32", "app_version": "0.1.0"}


def test_our_png_round_trips_the_request(tmp_path):
    image = Image.new("RGB", (64, 48), "red")
    path = png_recipe.save_png(image, tmp_path / "apple.png", RECIPE, seed=4243)
    found = png_recipe.read_recipe(path)
    assert found["source"] == "desktop-app"
    request = GenerationRequest.from_dict(found["request"])
    expected = GenerationRequest.from_dict(RECIPE)
    assert request.seed == 4243, "each file records the seed of its own image"
    assert request.batch_size == 1
    assert request.to_dict() == expected.to_dict() | {"seed": 4243, "batch_size": 1}
    assert found["info"]["model_hash"] == "abcdef0123"
    assert found["info"]["device"] == "cpu" and found["info"]["dtype"] == "float32"
    assert found["info"]["app_version"] == "0.1.0"


def test_the_parameters_chunk_is_automatic1111_shaped(tmp_path):
    path = png_recipe.save_png(Image.new("RGB", (8, 8)), tmp_path / "a.png", RECIPE, seed=4242)
    with Image.open(path) as image:
        text = image.text["parameters"]
    lines = text.split("\n")
    assert lines[0] == "a red apple, studio light"
    assert lines[1] == "Negative prompt: blurry, text"
    assert lines[2].startswith("Steps: 12, Sampler: Euler a, CFG scale: 6.5, Seed: 4242, Size: 64x48, "
                               "Model hash: abcdef0123, Model: emoji-mini")


def test_the_image_is_marked_as_ai_generated_in_xmp(tmp_path):
    path = png_recipe.save_png(Image.new("RGB", (8, 8)), tmp_path / "a.png", RECIPE)
    with Image.open(path) as image:
        xmp = image.info.get("xmp") or image.text.get(png_recipe.XMP_KEY)
        if isinstance(xmp, bytes):
            xmp = xmp.decode()
        assert png_recipe.DIGITAL_SOURCE_TYPE in xmp
        assert "Iptc4xmpExt:DigitalSourceType" in xmp


A1111 = ("masterpiece, a cat in a hat <lora:hatStyle:0.7>\n"
         "Negative prompt: lowres, bad anatomy\n"
         "watermark\n"
         'Steps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1234567890, '
         'Size: 512x768, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, '
         'Lora hashes: "hatStyle: 0123456789ab", Version: v1.10.1')


def test_an_automatic1111_png_is_read(tmp_path):
    info = PngInfo()
    info.add_text("parameters", A1111)
    path = tmp_path / "a1111.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    found = png_recipe.read_recipe(path)
    assert found["source"] == "parameters"
    request = found["request"]
    assert request["prompt"] == "masterpiece, a cat in a hat"
    assert request["negative_prompt"] == "lowres, bad anatomy\nwatermark"
    assert (request["steps"], request["guidance_scale"], request["seed"]) == (28, 7.0, 1234567890)
    assert (request["width"], request["height"]) == (512, 768)
    assert request["sampler"] == "DPM++ 2M Karras"
    assert request["loras"] == [{"name": "hatStyle", "weight": 0.7}]
    assert found["info"]["model_hash"] == "6ce0161689"
    assert found["info"]["model_name"] == "v1-5-pruned-emaonly"
    assert found["info"]["fields"]["Lora hashes"] == "hatStyle: 0123456789ab"
    GenerationRequest.from_dict(request)  # a valid request as it stands


def test_our_parameters_text_parses_back_the_same():
    parsed = png_recipe.parse_parameters(png_recipe.parameters_text(
        RECIPE | {"loras": [{"name": "style", "weight": 0.5}]}, seed=4242))["request"]
    for key in ("prompt", "negative_prompt", "steps", "guidance_scale", "sampler", "seed", "width", "height"):
        assert parsed[key] == RECIPE[key], key
    assert parsed["loras"] == [{"name": "style", "weight": 0.5}]


def test_a_prompt_without_negative_or_settings_line():
    parsed = png_recipe.parse_parameters("just a prompt\non two lines")
    assert parsed["request"]["prompt"] == "just a prompt\non two lines"
    assert parsed["request"]["negative_prompt"] == ""


def test_files_without_a_recipe_are_refused_clearly(tmp_path):
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    with pytest.raises(png_recipe.NoRecipe, match="no recipe"):
        png_recipe.read_recipe(plain)
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(png_recipe.NoRecipe, match="not an image"):
        png_recipe.read_recipe(text)
    with pytest.raises(png_recipe.NoRecipe, match="no such file"):
        png_recipe.read_recipe(tmp_path / "missing.png")


def test_timestamped_names_sort_by_time():
    from datetime import datetime

    first = png_recipe.timestamped_name(12345, datetime(2026, 11, 28, 14, 15, 3, 123000))
    later = png_recipe.timestamped_name(7, datetime(2026, 11, 28, 14, 15, 3, 124000))
    assert first == "20261128-141503-123-s12345.png"
    assert sorted([later, first]) == [first, later]


def test_model_hash_is_short_stable_and_cached(tmp_path, monkeypatch):
    from desktop_app.models import model_hash as hashing

    folder = tmp_path / "model"
    (folder / "unet").mkdir(parents=True)
    (folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"weights" * 100)
    (folder / "model_index.json").write_text("{}")
    first = hashing.model_hash(folder)
    assert len(first) == 10 and all(c in "0123456789abcdef" for c in first)
    calls = []
    monkeypatch.setattr(hashing, "_hash_files", lambda *a: calls.append(a) or "f" * 64)
    hashing._memory.clear()
    assert hashing.model_hash(folder) == first, "read from the on-disk cache, not hashed again"
    assert not calls
    assert hashing.model_hash(tmp_path / "empty") is None

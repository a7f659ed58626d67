"""Property tests for the parsers of user files: A1111 parameters text, our recipe JSON, the EXIF UserComment,
other tools' formats, the PNG chunk walker. Any input up to megabytes: bounded time (the deadline; a quadratic
parser takes hours on these sizes), and never an exception other than the documented bad-input error."""

from __future__ import annotations

import json
import os
import tempfile
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desktop_app.studio import exif_recipe, foreign_recipes, image_metadata, png_recipe

BOUNDED = settings(max_examples=60, deadline=timedelta(seconds=10),
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
TOKENS = ["Steps:", " 20", ",", ":", '"', "\\", " ", "a", "Seed: 1", "Size: 64x64", "<lora:", ">", "1", ".",
          "\n", "Negative prompt:", "[", "]", "{", "}", "-", "/", "\t", "\x1b", "é", "Refiner: x [ab]", "x"]


def long_text(max_size: int = 2_000_000):
    """Text up to megabytes, built cheaply: a random pattern of tricky tokens repeated many times."""
    pattern = st.lists(st.sampled_from(TOKENS), min_size=1, max_size=12).map("".join)
    return st.one_of(
        st.text(max_size=300),
        st.builds(lambda head, part, times: (head + part * times)[:max_size],
                  st.sampled_from(["", "p\nSteps: 1, "]), pattern, st.integers(1, 200_000)),
    )


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(
        st.sampled_from(["prompt", "steps", "seed", "loras", "name", "weight", "inputs", "class_type", "model",
                         "image", "width", "height", "positive", "negative", "text", "cfg", "sampler_name",
                         "guidance_scale", "sampler", "uc", "scale", "resolution", "lora_combined_1", "0", "1"]),
        children, max_size=6),
    max_leaves=30)


def json_text():
    deep = st.builds(lambda opener, times: opener * times, st.sampled_from(["[", "{\"a\":", "[{\"b\":"]),
                     st.integers(1, 200_000))
    return st.one_of(json_values.map(lambda value: json.dumps(value)), deep, st.text(max_size=200))


@BOUNDED
@given(long_text())
def test_parse_parameters_only_raises_no_recipe(text):
    try:
        parsed = png_recipe.parse_parameters(text)
    except png_recipe.NoRecipe:
        return
    assert isinstance(parsed["request"]["prompt"], str)
    png_recipe.describe({"source": "parameters", **parsed})


@BOUNDED
@given(json_text(), st.one_of(st.none(), long_text(200_000)))
def test_recipe_json_never_raises(recipe, parameters):
    chunks = {"recipe": recipe} | ({"parameters": parameters} if parameters is not None else {})
    found = png_recipe.recipe_from_chunks(chunks, [])
    if found is not None:
        png_recipe.describe(found)
        json.dumps(found, default=str)


@BOUNDED
@given(json_values)
def test_a_recipe_without_problems_gives_request_fields(value):
    if png_recipe.recipe_problem(value) is None:
        fields = png_recipe.request_fields(value)
        png_recipe.describe({"source": "desktop-app", "request": fields, "info": png_recipe._info(value)})


@BOUNDED
@given(st.one_of(
    st.binary(max_size=2000),
    st.builds(lambda code, body, times: code + body * times, st.sampled_from(
        [exif_recipe.UNICODE, exif_recipe.ASCII, exif_recipe.JIS, exif_recipe.UNDEFINED, b""]),
        st.binary(min_size=1, max_size=9), st.integers(1, 300_000)),
    st.integers(), st.text(max_size=100), st.tuples(st.integers()), st.none()),
    st.sampled_from([None, "<", ">"]))
def test_exif_user_comment_is_text_for_any_value(raw, endian):
    assert isinstance(exif_recipe.decode_user_comment(raw, endian), str)


FOREIGN_KEYS = ["parameters", "prompt", "workflow", "invokeai_metadata", "sd-metadata", "Dream", "Comment",
                "Description", "Software", "Source"]


@BOUNDED
@given(st.dictionaries(st.sampled_from(FOREIGN_KEYS), st.one_of(json_text(), long_text(100_000)), max_size=5),
       st.booleans())
def test_other_tools_readers_never_raise(chunks, novelai):
    if novelai:
        chunks["Software"] = "NovelAI"
    notes: list = []
    for reader in (foreign_recipes.fooocus, *foreign_recipes.READERS):
        found = reader(chunks, notes)
        if found is not None:
            png_recipe.describe(found)
            json.dumps(found)
    found = png_recipe.recipe_from_chunks(chunks, notes)
    assert found is None or isinstance(found["request"]["prompt"], str)


@BOUNDED
@given(st.builds(lambda nodes: json.dumps(nodes), st.dictionaries(
    st.sampled_from([str(n) for n in range(8)]),
    st.fixed_dictionaries({"class_type": st.sampled_from(["KSampler", "CLIPTextEncode", "LoraLoader", "X"]),
                           "inputs": st.dictionaries(
                               st.sampled_from(["positive", "negative", "model", "text", "seed", "steps", "cfg",
                                                "latent_image", "width", "height", "ckpt_name", "lora_name"]),
                               st.one_of(st.tuples(st.sampled_from([str(n) for n in range(8)]), st.just(0))
                                         .map(list), json_values), max_size=6)}), max_size=8)))
def test_comfyui_graphs_with_cycles_and_wrong_types(graph):
    found = foreign_recipes.comfyui({"prompt": graph}, [])
    assert found is None or isinstance(found["request"]["prompt"], str)


@BOUNDED
@given(st.one_of(st.binary(max_size=4000),
                 st.builds(lambda part, times: part * times, st.binary(min_size=1, max_size=16),
                           st.integers(1, 100_000))),
       st.booleans())
def test_the_image_reader_only_raises_unreadable(body, png):
    handle, name = tempfile.mkstemp(suffix=".png")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write((image_metadata.PNG_SIGNATURE if png else b"") + body)
        try:
            png_recipe.read_recipe(name)
        except png_recipe.NoRecipe:
            pass
    finally:
        os.unlink(name)


@BOUNDED
@given(st.sampled_from(list(image_metadata.STEALTH_ALPHA)), st.integers(0, 2**32 - 1), st.binary(max_size=3000),
       st.booleans())
def test_stealth_reader_on_any_bits_after_a_signature(signature, length, payload, gzip_header):
    from PIL import Image

    bits = "".join(format(byte, "08b") for byte in signature) + format(length, "032b")
    body = (b"\x1f\x8b" if gzip_header else b"") + payload
    bits += "".join(format(byte, "08b") for byte in body)
    width, height = 64, max(1, -(-len(bits) // 64))
    data = bytes(0xFE | int(bit) for bit in bits.ljust(width * height, "0"))
    plane = Image.frombytes("L", (height, width), data).transpose(Image.Transpose.TRANSPOSE)
    found = image_metadata.ImageText("PNG", width, height)
    text = image_metadata._stealth_from(plane, image_metadata.STEALTH_ALPHA, found)
    assert text is None or isinstance(text, str)

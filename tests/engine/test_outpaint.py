"""Outpainting (issue 17): the start image placed on a larger picture, the new area filled from its edges and
drawn by the family's inpaint pipeline. The result has the extended size, keeps the start image's pixels (beyond
the seam's feather) within one level, draws something new in the added area (not the fill), and its recipe
records the borders and reads back as the same request."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image
from tiny_families import build_family

from desktop_app.engine.events import Finished, StageStarted
from desktop_app.engine.image_inputs import edge_fill, load_inputs
from desktop_app.engine.recipe import Recipe
from desktop_app.engine.request import GenerationRequest, outpaint_size
from desktop_app.errors import RequestError
from desktop_app.resources import default_model_dir

EMBEDDED_BUILT = (default_model_dir() / "model_index.json").exists()


def levels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def run(engine, request):
    events = []
    return engine.run(request, events.append, threading.Event()), events


def new_area(size: tuple[int, int], area: tuple[int, int, int, int]) -> np.ndarray:
    """True outside the start image's (left, top, width, height)."""
    width, height = size
    left, top, inner_w, inner_h = area
    mask = np.ones((height, width), bool)
    mask[top:top + inner_h, left:left + inner_w] = False
    return mask


def check_result(result, request, start: np.ndarray, feather: int) -> None:
    """The extended size; the start image kept beyond the feather; the added area drawn, not the fill."""
    picture = levels(result.images[0])
    assert result.images[0].size == (request.width, request.height)
    left, top, width, height = request.outpaint_area()
    kept = picture[top + feather:top + height - feather, left + feather:left + width - feather]
    assert np.abs(kept - start[feather:height - feather, feather:width - feather]).max() <= 1
    fill = levels(load_inputs(request).image)
    changed = np.abs(picture - fill).max(axis=-1)[new_area(result.images[0].size, request.outpaint_area())]
    assert changed.mean() > 5, changed.mean()


@pytest.fixture(scope="module")
def engine():
    from desktop_app.engine.generate import Engine

    return Engine(device="cpu", preview_share=None)


# ---- the request and the fill --------------------------------------------------------------------------------


@pytest.fixture
def start_file(tmp_path):
    ramp = np.linspace(0, 255, 32).astype(np.uint8)
    path = tmp_path / "start.png"
    Image.fromarray(np.stack([np.tile(ramp, (32, 1)), np.tile(ramp[:, None], (1, 32)),
                              np.full((32, 32), 90, np.uint8)], -1)).save(path)
    return path


def test_the_fill_keeps_the_start_image_and_carries_its_edges_outward(start_file):
    start = Image.open(start_file).convert("RGB")
    filled = edge_fill(start, (16, 8, 0, 24), seed=1)
    assert filled.size == (48, 64)
    pixels = levels(filled)
    assert (pixels[8:40, 16:48] == levels(start)).all()
    # the left border continues the start image's left column (dark red), not a flat grey
    left_column = levels(start)[:, 0].mean(axis=0)
    assert np.abs(pixels[8:40, 12:16].mean(axis=(0, 1)) - left_column).max() < 16
    assert (levels(edge_fill(start, (16, 8, 0, 24), seed=1)) == pixels).all()  # seeded
    assert (levels(edge_fill(start, (16, 8, 0, 24), seed=2)) != pixels).any()


def test_the_picture_size_rounds_up_to_the_model_multiple_and_the_rest_goes_right_and_bottom():
    assert outpaint_size((300, 200), (64, 64, 64, 64), 8) == (432, 328, (64, 64, 68, 64))
    assert outpaint_size((300, 200), (64, 64, 64, 64), 16) == (432, 336, (64, 64, 68, 72))
    assert outpaint_size((64, 64), (16, 0, 16, 0), 16) == (96, 64, (16, 0, 16, 0))


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"outpaint": (8, 8, 8)}, "outpaint", "four whole numbers"),
    ({"outpaint": (8, -1, 8, 8)}, "outpaint", "each from 0 to 1024"),
    ({"outpaint": (2000, 0, 0, 0)}, "outpaint", "each from 0 to 1024"),
    ({"outpaint": (8, 8, 8, 8.5)}, "outpaint", "four whole numbers"),
    ({"outpaint": (32, 0, 32, 0)}, "outpaint", "width 64 less the 64 pixels added leaves 0"),
    ({"outpaint": (8, 8, 8, 8), "init_image": None}, "outpaint", "needs a start image"),
    ({"outpaint": (8, 8, 8, 8), "mask": "START"}, "outpaint", "cannot be combined with a mask"),
])
def test_bad_outpaint_is_refused_naming_the_field(start_file, changes, field, words):
    values = dict(prompt="x", init_image=str(start_file), strength=1.0) | changes
    values = {key: str(start_file) if value == "START" else value for key, value in values.items()}
    with pytest.raises(RequestError) as caught:
        GenerationRequest(**values)
    assert caught.value.field == field and words in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_recipe_list_becomes_the_tuple_and_zero_borders_are_no_outpainting(start_file):
    request = GenerationRequest(prompt="x", width=96, height=64, init_image=str(start_file),
                                outpaint=[16, 0, 16, 0])
    assert request.outpaint == (16, 0, 16, 0) and request.outpaint_area() == (16, 0, 64, 64)
    assert GenerationRequest.from_dict(request.to_dict()) == request
    assert GenerationRequest(prompt="x", init_image=str(start_file), outpaint=(0, 0, 0, 0)).outpaint is None


# ---- the embedded model ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face(tmp_path_factory, engine):
    if not EMBEDDED_BUILT:
        pytest.skip("the embedded model is not built")
    path = tmp_path_factory.mktemp("outpaint") / "face.png"
    result, _ = run(engine, GenerationRequest(prompt="grinning face", seed=1, steps=12, guidance_scale=10.0))
    result.images[0].save(path)
    return path


def test_embedded_outpaint_extends_the_picture_and_keeps_the_start_image(engine, face):
    request = GenerationRequest(prompt="grinning face", seed=2, steps=12, guidance_scale=10.0, width=96, height=80,
                                init_image=str(face), strength=1.0, outpaint=(16, 0, 16, 16), mask_blur=4)
    result, events = run(engine, request)
    assert isinstance(events[-1], Finished)
    check_result(result, request, levels(Image.open(face)), feather=4)
    details = [event.detail for event in events if isinstance(event, StageStarted)]
    assert "start image 64x64, extended by 16,0,16,16 (left,top,right,bottom) to 96x80" in details
    assert any(detail.startswith("outpaint: 12 of 12 steps (strength 1)") for detail in details)
    data = result.recipe.to_dict()
    assert list(data["outpaint"]) == [16, 0, 16, 16] and "mask_sha256" not in data
    assert Recipe.from_dict(data) == result.recipe


def test_embedded_outpaint_below_strength_1_starts_from_the_fill(engine, face):
    """Strength 0.5 keeps the fill's colours in the added area: closer to it than strength 1 is."""
    values = dict(prompt="grinning face", seed=2, steps=12, width=96, height=64, init_image=str(face),
                  outpaint=(16, 0, 16, 0))
    fill = levels(load_inputs(GenerationRequest(**values)).image)
    added = new_area((96, 64), (16, 0, 64, 64))
    distance = {}
    for strength in (0.5, 1.0):
        result, _ = run(engine, GenerationRequest(**values, strength=strength))
        distance[strength] = np.abs(levels(result.images[0]) - fill).max(axis=-1)[added].mean()
    assert distance[0.5] < distance[1.0]


def test_an_outpaint_from_a_random_seed_is_made_again_from_its_recipe(engine, face):
    """The window draws a random seed after the inputs are read: the fill must not depend on it, or the recipe
    (which records the drawn seed) would give another start picture and another image below strength 1."""
    values = dict(prompt="grinning face", steps=6, width=96, height=64, init_image=str(face),
                  outpaint=(16, 0, 16, 0), strength=0.6)
    first, _ = run(engine, GenerationRequest(**values))  # seed None: drawn by the engine
    again, _ = run(engine, first.recipe.request)  # the request as recorded: the drawn seed in it
    assert np.abs(levels(first.images[0]) - levels(again.images[0])).max() <= 1


# ---- the tiny models -------------------------------------------------------------------------------------------

# family -> (sampler, borders): the packed families' pictures are multiples of 16
TINY = {"sd1": ("DPM++ 2M", (8, 8, 0, 16)), "flux": ("Euler", (16, 0, 0, 16))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-outpaint")
    made = {}

    def folder(name):
        if name not in made:
            made[name] = build_family(name, root / name)
        return made[name]

    return folder


@pytest.mark.parametrize("name", list(TINY))
def test_tiny_families_outpaint(name, tiny, engine, tmp_path):
    sampler, borders = TINY[name]
    values = dict(prompt="a red fox", model=str(tiny(name)), steps=6, sampler=sampler, width=32, height=32,
                  guidance_scale=3.0, seed=5)
    start, _ = run(engine, GenerationRequest(**values))
    start.images[0].save(tmp_path / "start.png")
    width, height, borders = outpaint_size((32, 32), borders, 16 if name == "flux" else 8)
    request = GenerationRequest(**(values | dict(seed=9, width=width, height=height, init_image=str(
        tmp_path / "start.png"), strength=1.0, outpaint=borders, mask_blur=2)))
    result, events = run(engine, request)
    assert isinstance(events[-1], Finished)
    check_result(result, request, levels(start.images[0]), feather=2)


def test_a_family_without_an_inpaint_pipeline_refuses_outpainting_in_one_line(tiny, engine, start_file):
    request = GenerationRequest(prompt="x", model=str(tiny("pixart")), steps=4, width=48, height=32,
                                init_image=str(start_file), outpaint=(16, 0, 0, 0))
    with pytest.raises(RequestError) as caught:
        run(engine, request)
    assert caught.value.field == "outpaint" and "outpainting is not available" in str(caught.value)

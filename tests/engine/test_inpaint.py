"""Inpainting (issue 17): the start image repainted where the mask is white, by the family's inpaint pipeline
(which blends the known region back at every step for a model that is not an inpainting checkpoint, the
embedded one included). Outside the mask, beyond its feather, the result keeps the start image's pixels
exactly; inside, it changes; the recipe records the mask's hash and feather."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
from PIL import Image
from tiny_families import build_family

from desktop_app.engine.events import Finished, Progress, StageStarted
from desktop_app.engine.image_inputs import feathered, model_mask
from desktop_app.engine.recipe import Recipe
from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import RequestError
from desktop_app.resources import default_model_dir

EMBEDDED_BUILT = (default_model_dir() / "model_index.json").exists()


def levels(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def square_mask(path, size: int, box: tuple[int, int, int, int]):
    mask = Image.new("L", (size, size), 0)
    mask.paste(255, box)
    mask.save(path)
    return path


def outside(size: int, box: tuple[int, int, int, int], feather: int) -> np.ndarray:
    """True beyond ``feather`` pixels of the box."""
    keep = np.ones((size, size), bool)
    left, top, right, bottom = box
    keep[max(0, top - feather):bottom + feather, max(0, left - feather):right + feather] = False
    return keep


def run(engine, request):
    events = []
    return engine.run(request, events.append, threading.Event()), events


@pytest.fixture(scope="module")
def engine():
    from desktop_app.engine.generate import Engine

    return Engine(device="cpu", preview_share=None)


# ---- the feather -----------------------------------------------------------------------------------------------


def test_the_feather_fades_outward_over_its_pixels_and_stops():
    mask = Image.new("L", (20, 20), 0)
    mask.paste(255, (8, 8, 12, 12))
    fade = feathered(mask, 3)
    assert (fade[8:12, 8:12] == 1).all()  # the painted area is repainted in full
    assert [round(float(fade[10, 12 + d]), 4) for d in range(4)] == [0.75, 0.5, 0.25, 0.0]
    assert fade[outside(20, (8, 8, 12, 12), 3)].max() == 0
    assert (feathered(mask, 0) == np.asarray(mask) / 255).all()


def test_the_model_gets_whole_latent_cells_around_the_feathered_area():
    fade = np.zeros((32, 32), np.float32)
    fade[9:11, 9:11] = 0.3
    cells = np.asarray(model_mask(fade, 8))
    assert (cells[8:16, 8:16] == 255).all() and cells.sum() == 255 * 64


# ---- the embedded model ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def face(tmp_path_factory, engine):
    if not EMBEDDED_BUILT:
        pytest.skip("the embedded model is not built")
    path = tmp_path_factory.mktemp("inpaint") / "face.png"
    result, _ = run(engine, GenerationRequest(prompt="grinning face", seed=1, steps=12, guidance_scale=10.0))
    result.images[0].save(path)
    return path


@pytest.mark.parametrize("blur", [0, 4])
def test_embedded_inpaint_keeps_the_outside_and_repaints_the_inside(engine, face, tmp_path, blur):
    box = (20, 36, 44, 56)  # the mouth
    mask = square_mask(tmp_path / "mask.png", 64, box)
    result, events = run(engine, GenerationRequest(prompt="heart eyes", seed=3, steps=12, guidance_scale=10.0,
                                                   init_image=str(face), strength=0.9, mask=str(mask),
                                                   mask_blur=blur))
    assert isinstance(events[-1], Finished)
    before, after = levels(Image.open(face)), levels(result.images[0])
    change = np.abs(after - before).max(axis=-1)
    assert change[outside(64, box, blur)].max() <= 1  # within one level (in fact: equal)
    left, top, right, bottom = box
    assert change[top:bottom, left:right].mean() > 10  # repainted
    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.total for p in progress] == [10] * 10 and all(p.preview is not None for p in progress)
    assert any(isinstance(e, StageStarted) and e.detail.startswith("inpaint: 10 of 12 steps") for e in events)
    data = result.recipe.to_dict()
    assert data["mask_sha256"] == hashlib.sha256(mask.read_bytes()).hexdigest()
    assert data["init_image_sha256"] == hashlib.sha256(face.read_bytes()).hexdigest()
    assert data["mask_blur"] == blur and data["mask"] == str(mask)
    assert Recipe.from_dict(data) == result.recipe


def test_a_mask_of_another_size_covers_the_same_picture(engine, face, tmp_path):
    box = (40, 72, 88, 112)  # the mouth again, painted on a 128x128 copy
    mask = square_mask(tmp_path / "big-mask.png", 128, box)
    result, events = run(engine, GenerationRequest(prompt="heart eyes", seed=3, steps=12, init_image=str(face),
                                                   strength=0.9, mask=str(mask), mask_blur=0))
    change = np.abs(levels(result.images[0]) - levels(Image.open(face))).max(axis=-1)
    assert change[outside(64, (20, 36, 44, 56), 1)].max() <= 1
    assert any("mask 128x128 scaled to the start image's 64x64" in note for note in result.recipe.notices)


def test_a_black_mask_is_refused_naming_it(engine, face, tmp_path):
    black = square_mask(tmp_path / "black.png", 64, (0, 0, 0, 0))
    with pytest.raises(RequestError) as caught:
        run(engine, GenerationRequest(prompt="x", init_image=str(face), mask=str(black)))
    assert caught.value.field == "mask" and "nothing to repaint" in str(caught.value)


def test_a_transparent_mask_layer_reads_as_keep(engine, face, tmp_path):
    layer = Image.new("RGBA", (64, 64), (0, 0, 0, 0))
    layer.paste((255, 255, 255, 255), (20, 36, 44, 56))
    layer.save(tmp_path / "layer.png")
    result, _ = run(engine, GenerationRequest(prompt="heart eyes", seed=3, steps=12, init_image=str(face),
                                              strength=0.9, mask=str(tmp_path / "layer.png"), mask_blur=0))
    change = np.abs(levels(result.images[0]) - levels(Image.open(face))).max(axis=-1)
    assert change[outside(64, (20, 36, 44, 56), 0)].max() <= 1 and change[36:56, 20:44].mean() > 10


# ---- the tiny models -------------------------------------------------------------------------------------------

# family -> (sampler, size, the box to repaint: whole tokens for the packed families)
TINY = {"sd1": ("DPM++ 2M", 32, (8, 8, 24, 24)), "flux": ("Euler", 32, (16, 0, 32, 16)),
        "sdxl": ("Euler", 32, (8, 8, 24, 24)), "sd3": ("Euler", 32, (16, 16, 32, 32)),
        "chroma": ("Euler", 32, (0, 16, 16, 32)), "z-image": ("Euler", 32, (16, 0, 32, 16)),
        "qwen-image": ("Euler", 32, (0, 0, 16, 16)), "flux2-klein": ("Euler", 32, (16, 16, 32, 32))}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-inpaint")
    made = {}

    def folder(name):
        if name not in made:
            made[name] = build_family(name, root / name)
        return made[name]

    return folder


@pytest.mark.parametrize("name", list(TINY))
def test_tiny_families_inpaint_keeps_the_outside_exactly(name, tiny, engine, tmp_path):
    sampler, size, box = TINY[name]
    values = dict(prompt="a red fox", model=str(tiny(name)), steps=6, sampler=sampler, width=size, height=size,
                  guidance_scale=3.0, seed=5)
    start, _ = run(engine, GenerationRequest(**values))
    start.images[0].save(tmp_path / "start.png")
    mask = square_mask(tmp_path / "mask.png", size, box)
    repaint = dict(seed=9, init_image=str(tmp_path / "start.png"), strength=1.0, mask=str(mask), mask_blur=2)
    result, events = run(engine, GenerationRequest(**(values | repaint)))
    assert isinstance(events[-1], Finished) and result.images[0].size == (size, size)
    change = np.abs(levels(result.images[0]) - levels(start.images[0])).max(axis=-1)
    assert change[outside(size, box, 2)].max() <= 1
    left, top, right, bottom = box
    assert change[top:bottom, left:right].mean() > 1  # the random model repainted it


def test_a_family_without_an_inpaint_pipeline_is_refused_in_one_line(tiny, engine, tmp_path):
    Image.new("RGB", (32, 32), (9, 9, 9)).save(tmp_path / "start.png")
    mask = square_mask(tmp_path / "mask.png", 32, (0, 0, 16, 16))
    request = GenerationRequest(prompt="x", model=str(tiny("pixart")), steps=4, width=32, height=32,
                                init_image=str(tmp_path / "start.png"), mask=str(mask))
    with pytest.raises(RequestError) as caught:
        run(engine, request)
    assert caught.value.field == "mask" and "no inpaint pipeline" in str(caught.value)

"""Image to image (issue 17): a start image noised to ``strength`` of the schedule, then denoised by the family's
image-to-image pipeline made from the loaded model.

On the real embedded model the pictures are compared as a person sees them; on the tiny random models of the
other families the VAE is made see-through (tests/transparent_vae.py), because a random VAE decodes any latents to
much the same noise. Either way: strength 0.2 stays closer to the start image than strength 0.9, and than text to
image with the same seed. Also: the request's checks, fitting a start image of another shape, previews, seeds,
cancel and the recipe."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
from PIL import Image
from tiny_families import build_family
from transparent_vae import make_transparent

from desktop_app.engine.events import Cancelled, Finished, Progress, StageStarted
from desktop_app.engine.recipe import Recipe
from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import RequestError
from desktop_app.resources import default_model_dir

EMBEDDED_BUILT = (default_model_dir() / "model_index.json").exists()
needs_embedded = pytest.mark.skipif(not EMBEDDED_BUILT, reason="the embedded model is not built")


def distance(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute difference in levels (0..255) over all pixels and channels."""
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b.convert("RGB"), dtype=np.float64)).mean())


def run(engine, request):
    events = []
    return engine.run(request, events.append, threading.Event()), events


@pytest.fixture(scope="module")
def engine():
    from desktop_app.engine.generate import Engine

    return Engine(device="cpu", preview_share=None)  # a preview after every step


@pytest.fixture(scope="module")
def start_image(tmp_path_factory, engine):
    """A picture the embedded model drew (a face), as a PNG file."""
    if not EMBEDDED_BUILT:
        pytest.skip("the embedded model is not built")
    path = tmp_path_factory.mktemp("start") / "face.png"
    result, _ = run(engine, GenerationRequest(prompt="grinning face", seed=1, steps=12, guidance_scale=10.0))
    result.images[0].save(path)
    return path


def embedded(**changes) -> GenerationRequest:
    values = dict(prompt="red apple", seed=7, steps=12, guidance_scale=10.0)
    return GenerationRequest(**(values | changes))


# ---- the request --------------------------------------------------------------------------------------------


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "picture.png"
    Image.new("RGB", (64, 64), (200, 30, 30)).save(path)
    return path


@pytest.mark.parametrize(("changes", "field", "words"), [
    ({"strength": 0}, "strength", "above 0 and up to 1"),
    ({"strength": 1.5}, "strength", "above 0 and up to 1"),
    ({"strength": float("nan")}, "strength", "above 0 and up to 1"),
    ({"strength": True}, "strength", "above 0 and up to 1"),
    ({"strength": 0.1, "steps": 5}, "strength", "no step at all"),
    ({"mask_blur": -1}, "mask_blur", "from 0 to"),
    ({"mask_blur": 2.5}, "mask_blur", "whole number"),
    ({"init_fit": "squash"}, "init_fit", "crop, stretch"),
    ({"init_image": None, "mask": "PICTURE"}, "mask", "needs a start image"),
    ({"init_image": "MISSING"}, "init_image", "no such image file"),
    ({"init_image": "TEXT"}, "init_image", "not an image"),
    ({"mask": "TEXT"}, "mask", "not an image"),
    ({"refiner": "some-refiner"}, "refiner", "does not take a start image"),
])
def test_bad_image_inputs_are_refused_naming_the_field(changes, field, words, picture, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    stand_in = {"PICTURE": str(picture), "MISSING": str(tmp_path / "nowhere.png"), "TEXT": str(text)}
    values = {"prompt": "x", "init_image": str(picture)} | changes
    values = {k: stand_in.get(v, v) if isinstance(v, str) else v for k, v in values.items()}
    with pytest.raises(RequestError) as caught:
        GenerationRequest(**values)
    assert caught.value.field == field
    assert words in str(caught.value) and "\n" not in str(caught.value)


def test_a_good_request_keeps_paths_as_text_and_round_trips(picture):
    request = GenerationRequest(prompt="x", init_image=picture, strength=0.3, mask=picture, mask_blur=8)
    assert request.init_image == str(picture) and request.mask == str(picture)
    assert GenerationRequest.from_dict(request.to_dict()) == request
    assert GenerationRequest(prompt="x").strength == 0.6  # the default, as AUTOMATIC1111's img2img


def test_an_old_recipe_without_the_new_fields_reads_back():
    old = {"prompt": "a cat", "seed": 3, "seeds": [3], "model_name": "m", "device": "cpu", "dtype": "float32",
           "app_version": "0.1", "width": 64, "height": 64}
    recipe = Recipe.from_dict(old)
    assert recipe.request.init_image is None and recipe.request.mask is None
    assert recipe.init_image_sha256 is None and recipe.mask_sha256 is None
    assert "init_image_sha256" not in recipe.to_dict()


# ---- the embedded model --------------------------------------------------------------------------------------


@needs_embedded
def test_low_strength_stays_closer_to_the_start_image(engine, start_image):
    start = Image.open(start_image)
    near, events = run(engine, embedded(init_image=str(start_image), strength=0.2))
    far, _ = run(engine, embedded(init_image=str(start_image), strength=0.9))
    text, _ = run(engine, embedded())
    d_near, d_far, d_text = (distance(r.images[0], start) for r in (near, far, text))
    assert d_near < d_far and d_near < d_text, (d_near, d_far, d_text)
    assert d_near < 0.5 * d_text  # a real difference, not a rounding one
    # int(12 * 0.2) = 2 steps ran, each with a preview; the stage says so
    progress = [e for e in events if isinstance(e, Progress)]
    assert [(p.step, p.total) for p in progress] == [(1, 2), (2, 2)]
    assert all(p.preview is not None and p.preview.size == (64, 64) for p in progress)
    details = [e.detail for e in events if isinstance(e, StageStarted)]
    assert "start image 64x64" in details
    assert "image to image: 2 of 12 steps (strength 0.2), DPM++ 2M, guidance 10" in details


@needs_embedded
def test_the_recipe_records_the_start_image_and_round_trips(engine, start_image):
    result, _ = run(engine, embedded(init_image=str(start_image), strength=0.5, seed=11))
    data = result.recipe.to_dict()
    assert data["init_image"] == str(start_image) and data["strength"] == 0.5
    assert data["init_image_sha256"] == hashlib.sha256(start_image.read_bytes()).hexdigest()
    assert "mask_sha256" not in data
    assert Recipe.from_dict(data) == result.recipe
    again, _ = run(engine, Recipe.from_dict(data).request)  # the recipe regenerates the same image
    assert np.array_equal(np.asarray(again.images[0]), np.asarray(result.images[0]))


@needs_embedded
def test_batch_seeds_reproduce_alone(engine, start_image):
    batch, _ = run(engine, embedded(init_image=str(start_image), strength=0.6, seed=20, batch_size=2))
    alone, _ = run(engine, embedded(init_image=str(start_image), strength=0.6, seed=21))
    assert batch.seeds == [20, 21]
    assert np.abs(np.asarray(alone.images[0], dtype=int) - np.asarray(batch.images[1], dtype=int)).max() <= 2
    assert distance(batch.images[0], batch.images[1]) > 1  # the seeds differ


@needs_embedded
@pytest.mark.parametrize(("fit", "said"), [("crop", "cropped to"), ("stretch", "resized to")])
def test_a_start_image_of_another_shape_is_fitted_and_the_run_says_how(engine, start_image, tmp_path, fit, said):
    wide = tmp_path / "wide.png"
    Image.open(start_image).resize((128, 64)).save(wide)
    result, events = run(engine, embedded(init_image=str(wide), init_fit=fit, strength=0.2))
    line = f"start image 128x64 {said} 64x64"
    assert line in [e.detail for e in events if isinstance(e, StageStarted)]
    assert line in result.recipe.notices and result.images[0].size == (64, 64)
    # crop keeps the middle square undistorted; stretch squeezes the width: each is nearer its own fit
    middle = Image.open(start_image).resize((128, 64)).crop((32, 0, 96, 64))
    squeezed = Image.open(start_image).resize((128, 64)).resize((64, 64))
    own, other = (middle, squeezed) if fit == "crop" else (squeezed, middle)
    assert distance(result.images[0], own) < distance(result.images[0], other)


@needs_embedded
def test_cancel_stops_an_image_to_image_run_within_a_step(engine, start_image):
    cancel = threading.Event()
    events = []

    def emit(event):
        events.append(event)
        if isinstance(event, Progress):
            cancel.set()

    assert engine.run(embedded(init_image=str(start_image), strength=0.9), emit, cancel) is None
    assert isinstance(events[-1], Cancelled)
    assert len([e for e in events if isinstance(e, Progress)]) == 1


# ---- the tiny models of the other families -------------------------------------------------------------------

# family -> (sampler, size): the families whose VAE the see-through stand-in fits (a plain AutoencoderKL)
SEE_THROUGH = {"sd1": ("DPM++ 2M", 32), "flux": ("Euler", 32), "sdxl": ("Euler", 32), "sd3": ("Euler", 32),
               "z-image": ("Euler", 32), "chroma": ("Euler", 32)}
# the rest run image to image too (FLUX.2 [klein] through its inpaint pipeline); no pipeline: refused
OTHERS = {"qwen-image": ("Euler", 32), "flux2-klein": ("Euler", 32)}
REFUSED = {"pixart": ("DPM++ 2M", 32), "sana": ("Euler", 64)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny-families")
    made = {}

    def folder(name):
        if name not in made:
            made[name] = build_family(name, root / name)
        return made[name]

    return folder


@pytest.fixture(scope="module")
def gradient(tmp_path_factory):
    """A start image with structure everywhere: a left-to-right ramp in red, top-to-bottom in green."""
    ramp = np.linspace(0, 255, 32)
    pixels = np.stack([np.tile(ramp, (32, 1)), np.tile(ramp[:, None], (1, 32)), np.full((32, 32), 90)], -1)
    path = tmp_path_factory.mktemp("gradient") / "gradient.png"
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def tiny_request(folder, sampler, size, **changes) -> GenerationRequest:
    values = dict(prompt="a red fox", model=str(folder), steps=10, sampler=sampler, width=size, height=size,
                  guidance_scale=3.0, seed=5)
    return GenerationRequest(**(values | changes))


@pytest.mark.parametrize("name", list(SEE_THROUGH))
def test_tiny_families_low_strength_stays_closer(name, tiny, gradient, engine, monkeypatch):
    sampler, size = SEE_THROUGH[name]
    folder = tiny(name)
    model = engine.load(str(folder))
    make_transparent(monkeypatch, model.pipe.vae, model.pipe.vae_scale_factor)
    start = Image.open(gradient)
    near, events = run(engine, tiny_request(folder, sampler, size, init_image=str(gradient), strength=0.2))
    far, _ = run(engine, tiny_request(folder, sampler, size, init_image=str(gradient), strength=0.9))
    text, _ = run(engine, tiny_request(folder, sampler, size))
    d_near, d_far, d_text = (distance(r.images[0], start) for r in (near, far, text))
    assert d_near < d_far and d_near < d_text, (d_near, d_far, d_text)
    assert isinstance(events[-1], Finished) and near.images[0].size == (size, size)
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and progress[-1].total == progress[-1].step <= 3  # about 2 of the 10 steps
    assert all(p.preview is not None for p in progress)


@pytest.mark.parametrize("name", list(OTHERS))
def test_other_tiny_families_run_image_to_image(name, tiny, gradient, engine):
    sampler, size = OTHERS[name]
    result, events = run(engine, tiny_request(tiny(name), sampler, size, init_image=str(gradient), strength=0.5))
    assert isinstance(events[-1], Finished) and result.images[0].size == (size, size)
    assert result.recipe.init_image_sha256 == hashlib.sha256(gradient.read_bytes()).hexdigest()
    assert any(isinstance(e, StageStarted) and e.detail.startswith("image to image: 5 of 10") for e in events)


@pytest.mark.parametrize("name", list(REFUSED))
def test_a_family_without_an_image_to_image_pipeline_is_refused_in_one_line(name, tiny, gradient, engine):
    sampler, size = REFUSED[name]
    with pytest.raises(RequestError) as caught:
        run(engine, tiny_request(tiny(name), sampler, size, init_image=str(gradient)))
    assert caught.value.field == "init_image" and "no image-to-image" in str(caught.value)


def test_the_job_pipeline_shares_the_modules_and_keeps_their_dtype():
    """diffusers' from_pipe would cast the shared modules to float32 in place (a bf16 model on a GPU doubling its
    memory for good); the job's pipeline is made without that cast."""
    import torch
    from tiny_families import build_pipeline

    from desktop_app.engine.image_job import twin

    pipe = build_pipeline("flux").to(torch.bfloat16)
    made = twin(pipe, "FluxInpaintPipeline")
    assert type(made).__name__ == "FluxInpaintPipeline" and made.transformer is pipe.transformer
    assert pipe.transformer.dtype == torch.bfloat16 and pipe.vae.dtype == torch.bfloat16
    assert made.scheduler is pipe.scheduler and twin(pipe, "FluxInpaintPipeline") is made


@pytest.mark.parametrize("name", [*SEE_THROUGH, *OTHERS])
@pytest.mark.parametrize("masked", [False, True])
def test_image_k_of_a_tiny_familys_batch_is_seed_plus_k_alone(name, masked, tiny, gradient, engine, tmp_path):
    sampler, size = {**SEE_THROUGH, **OTHERS}[name]
    changes = dict(init_image=str(gradient), strength=0.6)
    if masked:
        mask = np.zeros((size, size), np.uint8)
        mask[:, size // 2:] = 255
        Image.fromarray(mask).save(tmp_path / "mask.png")
        changes["mask"] = str(tmp_path / "mask.png")
    batch, _ = run(engine, tiny_request(tiny(name), sampler, size, batch_size=2, **changes))
    alone, _ = run(engine, tiny_request(tiny(name), sampler, size, seed=6, **changes))
    first, _ = run(engine, tiny_request(tiny(name), sampler, size, **changes))
    assert batch.seeds == [5, 6] and len(batch.images) == 2
    gap = np.abs(np.asarray(alone.images[0], dtype=int) - np.asarray(batch.images[1], dtype=int)).max()
    assert gap <= 2, gap
    assert np.abs(np.asarray(first.images[0], dtype=int) - np.asarray(batch.images[0], dtype=int)).max() <= 2

"""Sana Sprint's image to image (issue 17): diffusers' SanaSprintImg2ImgPipeline made from the loaded Sana Sprint
model. On the tiny random Sana Sprint (tests/tiny_families.py) the DC-AE is made see-through
(tests/transparent_vae.py, answering with the ``latent`` a DC-AE's encode returns) so that what survives of the
start image shows: strength 0.2 stays closer to the start image than strength 0.9 and than text to image with the
same seed. Its published 2 steps run too; inpainting stays refused in one line (diffusers has no Sana inpaint
pipeline)."""

from __future__ import annotations

import threading
import types

import numpy as np
import pytest
from PIL import Image
from tiny_families import build_family
from transparent_vae import make_transparent

from desktop_app.engine.events import Finished, Progress, StageStarted
from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import RequestError
from desktop_app.models import families

SIZE = 32


def distance(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b.convert("RGB"), dtype=np.float64)).mean())


def run(engine, request):
    events = []
    return engine.run(request, events.append, threading.Event()), events


def see_through(monkeypatch, vae, factor: int) -> None:
    """tests/transparent_vae.py's stand-in, its encode answering as AutoencoderDC's does (``.latent``)."""
    make_transparent(monkeypatch, vae, factor)
    encode = vae.encode

    def dc_encode(x, return_dict=True):
        latents = encode(x).latent_dist.latents
        return types.SimpleNamespace(latent=latents) if return_dict else (latents,)

    monkeypatch.setattr(vae, "encode", dc_encode, raising=False)


@pytest.fixture(scope="module")
def engine():
    from desktop_app.engine.generate import Engine

    return Engine(device="cpu", preview_share=None)


@pytest.fixture(scope="module")
def sprint(tmp_path_factory):
    return build_family("sana-sprint", tmp_path_factory.mktemp("sana-sprint") / "sana-sprint")


@pytest.fixture(scope="module")
def gradient(tmp_path_factory):
    ramp = np.linspace(0, 255, SIZE)
    pixels = np.stack([np.tile(ramp, (SIZE, 1)), np.tile(ramp[:, None], (1, SIZE)), np.full((SIZE, SIZE), 90)], -1)
    path = tmp_path_factory.mktemp("gradient") / "gradient.png"
    Image.fromarray(pixels.astype(np.uint8)).save(path)
    return path


def sprint_request(folder, **changes) -> GenerationRequest:
    values = dict(prompt="a red fox", model=str(folder), steps=10, sampler="Euler", width=SIZE, height=SIZE,
                  guidance_scale=4.5, seed=5)
    return GenerationRequest(**(values | changes))


def test_sana_sprint_declares_its_image_to_image_pipeline():
    declared = families.FAMILIES["sana-sprint"]
    assert declared.image_to_image == "SanaSprintImg2ImgPipeline" and declared.inpaint is None
    assert families.FAMILIES["sana"].image_to_image is None  # plain Sana: diffusers has none


def test_low_strength_stays_closer_to_the_start_image(sprint, gradient, engine, monkeypatch):
    model = engine.load(str(sprint))
    see_through(monkeypatch, model.pipe.vae, model.pipe.vae_scale_factor)
    start = Image.open(gradient)
    near, events = run(engine, sprint_request(sprint, init_image=str(gradient), strength=0.2))
    far, _ = run(engine, sprint_request(sprint, init_image=str(gradient), strength=0.9))
    text, _ = run(engine, sprint_request(sprint))
    d_near, d_far, d_text = (distance(r.images[0], start) for r in (near, far, text))
    assert d_near < d_far and d_near < d_text, (d_near, d_far, d_text)
    assert isinstance(events[-1], Finished) and near.images[0].size == (SIZE, SIZE)
    assert type(engine.model.pipe).__name__ == "SanaSprintPipeline"  # the job's pipeline is made from it
    progress = [e for e in events if isinstance(e, Progress)]
    assert progress and progress[-1].total == progress[-1].step <= 3  # about 2 of the 10 steps
    assert all(p.preview is not None for p in progress)
    assert "image to image: 2 of 10 steps (strength 0.2), Euler, guidance 4.5" in [
        e.detail for e in events if isinstance(e, StageStarted)]
    assert near.recipe.family == "sana-sprint" and near.recipe.request.strength == 0.2


def test_its_published_two_steps_run_and_repeat(sprint, gradient, engine):
    made = sprint_request(sprint, steps=2, init_image=str(gradient), strength=0.5)
    first, events = run(engine, made)
    again, _ = run(engine, made)
    assert isinstance(events[-1], Finished)
    assert len([e for e in events if isinstance(e, Progress)]) == 1  # from the intermediate time: one step
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(again.images[0]))


def test_inpainting_on_sana_sprint_is_refused_in_one_line(sprint, gradient, engine, tmp_path):
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, (0, 0, 16, 16))
    mask.save(tmp_path / "mask.png")
    with pytest.raises(RequestError) as caught:
        run(engine, sprint_request(sprint, init_image=str(gradient), mask=str(tmp_path / "mask.png")))
    assert caught.value.field == "mask" and "no inpaint pipeline" in str(caught.value)
    assert "\n" not in str(caught.value)

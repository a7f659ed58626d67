"""ControlNets with a start image (issue 17): image to image, inpainting and outpainting on a tiny random SD 1.x,
a tiny SDXL and the embedded model, through diffusers' ControlNet img2img and inpaint pipelines
(control_job.IMAGE_CONTROLNETS) made from the loaded components. A ControlNet changes the picture, weight 0 gives
exactly the plain image-to-image (or inpaint) picture of the same seed, inpainting keeps the outside of the
mask, cancel stops within a step, the recipe records the start image, the mask and the ControlNets and reruns
from the PNG. Flux.1's (and SD3's refusal): tests/engine/test_controlnet_flow_image.py."""

from __future__ import annotations

import hashlib
import threading

import numpy as np
import pytest
from PIL import Image
from tiny_controlnets import build_sd_with_controlnets, control_picture

from desktop_app.engine.events import Cancelled, Progress, StageStarted
from desktop_app.engine.recipe import Recipe
from desktop_app.engine.request import ControlChoice, GenerationRequest
from desktop_app.resources import default_model_dir

BOX = (8, 8, 24, 24)  # the mask's white square on the 32x32 picture


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("controlnet-image")
    found = build_sd_with_controlnets(root)
    found["picture"] = control_picture(root / "picture.png")
    ramp = np.linspace(0, 255, 32, dtype=np.uint8)
    blue = np.full((32, 32), 90, np.uint8)
    start = np.stack([np.tile(ramp, (32, 1)), np.tile(ramp[:, None], (1, 32)), blue], -1)
    Image.fromarray(start).save(root / "start.png")
    found["start"] = root / "start.png"
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, BOX)
    mask.save(root / "mask.png")
    found["mask"] = root / "mask.png"
    return found


def ask(tiny, *controls, model=None, **changes) -> GenerationRequest:
    values = dict(prompt="a red cat", width=32, height=32, steps=4, seed=11, sampler="Euler",
                  model=str(model or tiny["model"]), init_image=str(tiny["start"]), strength=0.75,
                  controls=tuple(controls))
    return GenerationRequest(**(values | changes))


def control(tiny, name="canny-a", **changes) -> ControlChoice:
    return ControlChoice(**({"model": str(tiny[name]), "image": str(tiny["picture"])} | changes))


def levels(a: Image.Image, b: Image.Image) -> int:
    """The largest difference of one channel of one pixel, in levels (0..255)."""
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def outside_change(a: Image.Image, b: Image.Image) -> int:
    """The largest difference outside the mask's square (mask_blur 0: nothing feathered)."""
    change = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b.convert("RGB"), dtype=np.int16)).max(-1)
    keep = np.ones(change.shape, bool)
    keep[BOX[1]:BOX[3], BOX[0]:BOX[2]] = False
    return int(change[keep].max())


def test_image_to_image_with_a_controlnet_and_weight_zero_gives_the_plain_picture(generate, tiny):
    plain, _ = generate(ask(tiny))
    steered, events = generate(ask(tiny, control(tiny)))
    assert levels(steered.images[0], plain.images[0]) > 8
    denoise = [e.detail for e in events.of(StageStarted) if e.stage == "denoise"]
    assert denoise[0].startswith("image to image: 3 of 4 steps (strength 0.75)")
    assert "ControlNet canny-a (weight 1, steps 0-1, none)" in denoise[0]
    progress = events.of(Progress)
    assert [p.step for p in progress] == [1, 2, 3] and all(p.preview is not None for p in progress)
    off, _ = generate(ask(tiny, control(tiny, weight=0)))
    assert levels(off.images[0], plain.images[0]) == 0  # exactly the plain image-to-image picture
    outside, _ = generate(ask(tiny, control(tiny, start=0.9, end=1.0)))  # no step begins at 0.9 or later
    assert levels(outside.images[0], plain.images[0]) == 0


def test_two_controlnets_and_a_batch_with_a_start_image(generate, tiny):
    one, _ = generate(ask(tiny, control(tiny)))
    both, _ = generate(ask(tiny, control(tiny), control(tiny, "canny-b", weight=0.7)))
    assert levels(both.images[0], one.images[0]) > 0
    first_only, _ = generate(ask(tiny, control(tiny), control(tiny, "canny-b", weight=0)))
    assert levels(first_only.images[0], one.images[0]) == 0
    batch, _ = generate(ask(tiny, control(tiny), batch_size=2))
    second, _ = generate(ask(tiny, control(tiny), seed=12))
    assert batch.seeds == [11, 12] and levels(batch.images[1], second.images[0]) <= 1


def test_inpainting_with_a_controlnet_keeps_the_outside_and_weight_zero_is_plain_inpainting(generate, tiny):
    masked = dict(mask=str(tiny["mask"]), mask_blur=0, strength=1.0)
    plain, _ = generate(ask(tiny, **masked))
    steered, events = generate(ask(tiny, control(tiny), **masked))
    start = Image.open(tiny["start"])
    assert outside_change(steered.images[0], start) <= 1 and outside_change(plain.images[0], start) <= 1
    assert levels(steered.images[0], plain.images[0]) > 8  # inside the mask
    denoise = [e.detail for e in events.of(StageStarted) if e.stage == "denoise"]
    assert denoise[0].startswith("inpaint: 4 of 4 steps") and "ControlNet canny-a" in denoise[0]
    off, _ = generate(ask(tiny, control(tiny, weight=0), **masked))
    assert levels(off.images[0], plain.images[0]) == 0


def test_outpainting_runs_with_a_controlnet(generate, tiny):
    wide = dict(outpaint=(8, 0, 8, 0), width=48, height=32, strength=1.0)
    plain, _ = generate(ask(tiny, **wide))
    steered, events = generate(ask(tiny, control(tiny), **wide))
    assert steered.images[0].size == (48, 32) and levels(steered.images[0], plain.images[0]) > 0
    assert any(e.stage == "denoise" and e.detail.startswith("outpaint") and "ControlNet canny-a" in e.detail
               for e in events.of(StageStarted))
    off, _ = generate(ask(tiny, control(tiny, weight=0), **wide))
    assert levels(off.images[0], plain.images[0]) == 0


def test_the_recipe_holds_the_start_image_mask_and_controlnets_and_reruns_from_the_png(generate, tiny, tmp_path):
    from desktop_app.studio.png_recipe import read_recipe, save_png

    result, _ = generate(ask(tiny, control(tiny, weight=0.8, preprocessor="canny"), mask=str(tiny["mask"]),
                             mask_blur=2, strength=0.9))
    data = result.recipe.to_dict()
    assert data["init_image"] == str(tiny["start"]) and data["mask"] == str(tiny["mask"])
    assert data["init_image_sha256"] == hashlib.sha256(tiny["start"].read_bytes()).hexdigest()
    assert data["controls"][0]["model"] == str(tiny["canny-a"]) and data["controls"][0]["weight"] == 0.8
    assert data["control_models"][0]["name"] == "canny-a"
    assert Recipe.from_dict(data) == result.recipe
    path = save_png(result.images[0], tmp_path / "out.png", data)
    again = GenerationRequest.from_dict(read_recipe(path)["request"])
    assert again == result.recipe.request
    rerun, _ = generate(again)
    assert levels(rerun.images[0], result.images[0]) <= 1


def test_cancel_stops_a_controlnet_image_to_image_run_within_a_step(engine, tiny):
    cancel, events = threading.Event(), []

    def emit(event):
        events.append(event)
        if isinstance(event, Progress) and event.step == 1:
            cancel.set()

    assert engine.run(ask(tiny, control(tiny), steps=6), emit, cancel) is None
    assert [e.step for e in events if isinstance(e, Progress)] == [1] and isinstance(events[-1], Cancelled)


@pytest.mark.parametrize("masked", [False, True])
def test_an_sdxl_controlnet_with_a_start_image(generate, tiny, tiny_xl, masked):
    extra = dict(mask=str(tiny["mask"]), mask_blur=0) if masked else {}
    plain, _ = generate(ask(tiny, model=tiny_xl["base"], **extra))
    steered, _ = generate(ask(tiny, control(tiny, "sdxl"), model=tiny_xl["base"], **extra))
    assert levels(steered.images[0], plain.images[0]) > 8
    off, _ = generate(ask(tiny, control(tiny, "sdxl", weight=0), model=tiny_xl["base"], **extra))
    assert levels(off.images[0], plain.images[0]) == 0
    if masked:
        assert outside_change(steered.images[0], Image.open(tiny["start"])) <= 1


EMBEDDED_BUILT = (default_model_dir() / "model_index.json").exists()


@pytest.mark.skipif(not EMBEDDED_BUILT, reason="the embedded model is not built")
def test_the_embedded_model_takes_a_controlnet_with_a_start_image(generate, tiny, tmp_path):
    from diffusers import UNet2DConditionModel
    from tiny_controlnets import build_controlnet

    unet = UNet2DConditionModel.from_pretrained(default_model_dir() / "unet")
    net = build_controlnet(unet, tmp_path / "emoji-canny", 3)
    embedded = dict(prompt="red apple", width=64, height=64, steps=6, seed=7, guidance_scale=10.0,
                    init_image=str(tiny["start"]), strength=0.8)
    plain, _ = generate(GenerationRequest(**embedded))
    steered, _ = generate(GenerationRequest(**embedded, controls=(control(tiny, model=str(net)),)))
    assert levels(steered.images[0], plain.images[0]) > 8
    off, _ = generate(GenerationRequest(**embedded, controls=(control(tiny, model=str(net), weight=0),)))
    assert levels(off.images[0], plain.images[0]) == 0

"""Flux.1 ControlNets with a start image (issue 17): image to image, inpainting and outpainting on a tiny random
Flux.1 through diffusers' FluxControlNetImg2ImgPipeline and FluxControlNetInpaintPipeline made from the loaded
components (engine/control_flow.py). A ControlNet changes the picture, weight 0 gives exactly the plain
image-to-image (inpaint, outpaint) picture of the same seed, image k of a batch is seed + k's alone, the same
request gives the same picture, inpainting keeps the outside of the mask, the recipe records the start image, the
mask and the ControlNets and reruns from the PNG; SD3 with a start image is refused in one line before the
ControlNet loads."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tiny_controlnets import control_picture
from tiny_flow_controlnets import build_flow_with_controlnets, build_flux_controlnet

from desktop_app.engine.events import Progress, StageStarted
from desktop_app.engine.recipe import Recipe
from desktop_app.engine.request import ControlChoice, GenerationRequest
from desktop_app.errors import RequestError

BOX = (8, 8, 24, 24)  # the mask's white square on the 32x32 picture


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow-controlnet-image")
    found = build_flow_with_controlnets(root)
    found["flux-control-b"] = build_flux_controlnet(root / "flux-depth", 5)
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


def ask(tiny, *controls, model="flux", **changes) -> GenerationRequest:
    values = dict(prompt="a red cat", width=32, height=32, steps=4, seed=11, sampler="Euler", guidance_scale=3.0,
                  model=str(tiny[model]), init_image=str(tiny["start"]), strength=0.75, controls=tuple(controls))
    return GenerationRequest(**(values | changes))


def control(tiny, name="flux-control", **changes) -> ControlChoice:
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


def test_flux_image_to_image_with_a_controlnet_and_weight_zero_gives_the_plain_picture(generate, tiny):
    plain, _ = generate(ask(tiny))
    steered, events = generate(ask(tiny, control(tiny)))
    assert levels(steered.images[0], plain.images[0]) > 8
    denoise = [e.detail for e in events.of(StageStarted) if e.stage == "denoise"]
    assert denoise[0].startswith("image to image: 3 of 4 steps (strength 0.75)")
    assert "ControlNet flux-canny (weight 1, steps 0-1, none)" in denoise[0]
    progress = events.of(Progress)
    assert [p.step for p in progress] == [1, 2, 3] and all(p.preview is not None for p in progress)
    off, _ = generate(ask(tiny, control(tiny, weight=0)))
    assert levels(off.images[0], plain.images[0]) == 0  # exactly the plain image-to-image picture
    outside, _ = generate(ask(tiny, control(tiny, start=0.9, end=1.0)))  # no step begins at 0.9 or later
    assert levels(outside.images[0], plain.images[0]) == 0
    again, _ = generate(ask(tiny, control(tiny)))  # the same request: the same picture
    assert levels(again.images[0], steered.images[0]) == 0


@pytest.mark.parametrize("masked", [False, True])
def test_each_image_of_a_flux_controlnet_batch_is_its_seed_alone(generate, tiny, masked):
    """diffusers encodes a batch's one start image with the first generator only; here each image draws its own
    (control_flow.py), so image k is seed + k's picture whatever the batch."""
    extra = dict(mask=str(tiny["mask"]), mask_blur=0) if masked else {}
    both = (control(tiny), control(tiny, "flux-control-b", weight=0.7))
    batch, _ = generate(ask(tiny, *both, batch_size=2, **extra))
    first, _ = generate(ask(tiny, *both, **extra))
    second, _ = generate(ask(tiny, *both, seed=12, **extra))
    assert batch.seeds == [11, 12]
    assert levels(batch.images[0], first.images[0]) <= 1 and levels(batch.images[1], second.images[0]) <= 1
    assert levels(first.images[0], second.images[0]) > 8  # the seeds differ
    assert [r["weight"] for r in batch.recipe.control_models] == [1.0, 0.7]


def test_flux_inpainting_with_a_controlnet_keeps_the_outside_and_weight_zero_is_plain_inpainting(generate, tiny):
    masked = dict(mask=str(tiny["mask"]), mask_blur=0, strength=1.0)
    plain, _ = generate(ask(tiny, **masked))
    steered, events = generate(ask(tiny, control(tiny), **masked))
    start = Image.open(tiny["start"])
    assert outside_change(steered.images[0], start) <= 1 and outside_change(plain.images[0], start) <= 1
    assert levels(steered.images[0], plain.images[0]) > 8  # inside the mask
    denoise = [e.detail for e in events.of(StageStarted) if e.stage == "denoise"]
    assert denoise[0].startswith("inpaint: 4 of 4 steps") and "ControlNet flux-canny" in denoise[0]
    off, _ = generate(ask(tiny, control(tiny, weight=0), **masked))
    assert levels(off.images[0], plain.images[0]) == 0
    again, _ = generate(ask(tiny, control(tiny), **masked))
    assert levels(again.images[0], steered.images[0]) == 0


def test_flux_outpainting_runs_with_a_controlnet(generate, tiny):
    wide = dict(outpaint=(16, 0, 0, 0), width=48, height=32, strength=1.0)
    plain, _ = generate(ask(tiny, **wide))
    steered, events = generate(ask(tiny, control(tiny), **wide))
    assert steered.images[0].size == (48, 32) and levels(steered.images[0], plain.images[0]) > 0
    assert any(e.stage == "denoise" and e.detail.startswith("outpaint") and "ControlNet flux-canny" in e.detail
               for e in events.of(StageStarted))
    off, _ = generate(ask(tiny, control(tiny, weight=0), **wide))
    assert levels(off.images[0], plain.images[0]) == 0


def test_the_recipe_holds_the_start_image_mask_and_flux_controlnet_and_reruns(generate, tiny, tmp_path):
    from desktop_app.studio.png_recipe import read_recipe, save_png

    result, _ = generate(ask(tiny, control(tiny, weight=0.8, preprocessor="canny"), mask=str(tiny["mask"]),
                             mask_blur=2, strength=0.9))
    data = result.recipe.to_dict()
    assert data["init_image"] == str(tiny["start"]) and data["mask"] == str(tiny["mask"])
    assert data["controls"][0]["model"] == str(tiny["flux-control"]) and data["controls"][0]["weight"] == 0.8
    assert data["control_models"][0]["name"] == "flux-canny"
    assert Recipe.from_dict(data) == result.recipe
    path = save_png(result.images[0], tmp_path / "out.png", data)
    rerun, _ = generate(GenerationRequest.from_dict(read_recipe(path)["request"]))
    assert levels(rerun.images[0], result.images[0]) <= 1


def test_the_control_image_is_encoded_at_its_mean_and_the_start_image_sampled(tiny, engine):
    """In the pipeline's call the VAE encodes at its mean (the control image), but the start image is sampled
    with its generator as the plain image-to-image pipeline samples it, once per generator; the VAE is put back."""
    import torch
    from diffusers import FluxControlNetModel

    from desktop_app.engine.control_flow import mean_encoding
    from desktop_app.engine.control_job import build_pipeline

    model = engine.load(str(tiny["flux"]))
    net = FluxControlNetModel.from_pretrained(tiny["flux-control"]).eval()
    pipe = build_pipeline(model.pipe, "FluxControlNetImg2ImgPipeline", [net])
    vae, pixels = pipe.vae, torch.rand(1, 3, 32, 32) * 2 - 1
    with mean_encoding(vae):
        mean = vae.encode(pixels).latent_dist.sample(torch.Generator().manual_seed(1))
        one = pipe._encode_vae_image(pixels, torch.Generator().manual_seed(1))
        two = pipe._encode_vae_image(pixels, [torch.Generator().manual_seed(s) for s in (1, 2)])
    assert "encode" not in vae.__dict__
    posterior = vae.encode(pixels).latent_dist
    assert torch.equal(mean, posterior.mode())
    drawn = posterior.sample(torch.Generator().manual_seed(1))
    drawn = (drawn - vae.config.shift_factor) * vae.config.scaling_factor
    assert torch.allclose(one, drawn) and not torch.allclose(drawn, posterior.mode())
    assert two.shape[0] == 2 and torch.equal(two[:1], one) and not torch.equal(two[0], two[1])


def test_an_sd3_controlnet_with_a_start_image_is_refused_in_one_line_before_it_loads(engine, tiny, monkeypatch):
    import diffusers

    def never(*args, **kwargs):
        raise AssertionError("the ControlNet's weights were loaded")

    monkeypatch.setattr(diffusers.SD3ControlNetModel, "from_pretrained", never)
    with pytest.raises(RequestError) as caught:
        engine.run(ask(tiny, control(tiny, "sd3-control"), model="sd3", steps=2), lambda event: None)
    assert caught.value.field == "controls" and "\n" not in str(caught.value)
    words = ("with Stable Diffusion 1.x, 2.x, SDXL and Flux.1 models only; the model tiny-sd3 is Stable Diffusion "
             "3.x: leave the start image empty")
    assert words in str(caught.value)


def test_a_controlnet_on_a_flux_fill_model_is_refused_in_one_line(tmp_path):
    from types import SimpleNamespace

    from desktop_app.engine.control_job import make_control

    fill = type("FluxFillPipeline", (), {})()  # what a Fill folder loads as
    model = SimpleNamespace(pipe=fill, family="flux", display_name="my-fill")
    request = GenerationRequest(prompt="a cat", controls=(ControlChoice(model="anything", image=str(
        _picture(tmp_path))),))
    with pytest.raises(RequestError) as caught:
        make_control(request, model)
    line = str(caught.value)
    assert caught.value.field == "controls" and "FLUX.1 Fill" in line and "my-fill" in line


def _picture(tmp_path):
    path = tmp_path / "edges.png"
    Image.new("RGB", (32, 32), (200, 10, 10)).save(path)
    return path

"""FLUX.1 Fill (issue 17): Black Forest Labs' inpainting model of Flux.1 runs inpainting and outpainting with
diffusers' FluxFillPipeline, as a diffusers folder and as a single transformer file with its components; outside
the mask the start image's pixels are kept exactly, as with every other family. Text to image and plain image to
image on it are refused in one line. It is recognised by its pipeline or its transformer's 384 input channels and
shown as "FLUX.1 Fill".

The tiny random Fill model is the tiny Flux.1 (tests/tiny_families.py) with a transformer of Fill's channel
layout for that VAE: 16 latent channels packed 2x2 (64), the masked image's latents (64) and the mask at the VAE's
8x8 pixels per latent, packed (256): 384 in, 64 out, as the published model."""

from __future__ import annotations

import json
import shutil
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file
from tiny_families import build_pipeline

from desktop_app.engine.events import Finished, Progress, StageStarted
from desktop_app.engine.request import GenerationRequest, outpaint_size
from desktop_app.errors import RequestError
from desktop_app.models import components, families, flux_fill, model_files, model_library

SIZE, BOX = 32, (16, 0, 32, 16)  # a whole packed token (16 pixels) at the top right


def build_flux_fill(seed: int = 0):
    """The tiny Flux.1 with a Fill transformer: a FluxFillPipeline."""
    from diffusers import FluxFillPipeline, FluxTransformer2DModel

    base = build_pipeline("flux", seed)
    torch.manual_seed(seed)
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=384, out_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
        guidance_embeds=True)
    parts = ("scheduler", "vae", "text_encoder", "tokenizer", "text_encoder_2", "tokenizer_2")
    return FluxFillPipeline(transformer=transformer, **{k: v for k, v in base.components.items() if k in parts})


@pytest.fixture(scope="module")
def fill(tmp_path_factory):
    """{"folder": the Fill diffusers folder, "file": its transformer as one file, "components": the folder
    without the transformer's weights, "flux": a plain tiny Flux.1 folder}."""
    root = tmp_path_factory.mktemp("flux-fill")
    pipe = build_flux_fill()
    pipe.save_pretrained(root / "fill")
    shutil.copytree(root / "fill", root / "components")
    for weights in (root / "components" / "transformer").glob("*.safetensors"):
        weights.unlink()
    save_file({k: v.contiguous() for k, v in pipe.transformer.state_dict().items()}, root / "fill.safetensors")
    build_pipeline("flux").save_pretrained(root / "flux")
    return {"folder": root / "fill", "file": root / "fill.safetensors", "components": root / "components",
            "flux": root / "flux"}


@pytest.fixture(scope="module")
def engine():
    from desktop_app.engine.generate import Engine

    return Engine(device="cpu", preview_share=None)


@pytest.fixture(scope="module")
def start(tmp_path_factory, engine, fill):
    """A picture the tiny Flux.1 drew, as a PNG file."""
    path = tmp_path_factory.mktemp("fill-start") / "start.png"
    result = engine.run(request(fill["flux"]), lambda event: None, threading.Event())
    result.images[0].save(path)
    return path


def request(model, **changes) -> GenerationRequest:
    values = dict(prompt="a red fox", model=str(model), steps=6, sampler="Euler", width=SIZE, height=SIZE,
                  guidance_scale=30.0, seed=5)
    return GenerationRequest(**(values | changes))


def run(engine, made: GenerationRequest):
    events = []
    return engine.run(made, events.append, threading.Event()), events


def levels(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def square_mask(path, box=BOX):
    mask = Image.new("L", (SIZE, SIZE), 0)
    mask.paste(255, box)
    mask.save(path)
    return path


def outside(box=BOX, feather: int = 0) -> np.ndarray:
    keep = np.ones((SIZE, SIZE), bool)
    left, top, right, bottom = box
    keep[max(0, top - feather):bottom + feather, max(0, left - feather):right + feather] = False
    return keep


# ---- recognised and shown --------------------------------------------------------------------------------------


def test_a_fill_folder_and_file_are_flux_shown_as_flux_1_fill(fill, tmp_path):
    folder = model_files.inspect(fill["folder"])
    assert (folder.family, folder.variant) == ("flux", "flux-fill")
    assert "FluxFillPipeline" in folder.details and "(FLUX.1 Fill)" in folder.details
    listed = model_library.Entry(name="fill", path=str(fill["folder"]), kind=folder.kind, family=folder.family,
                                 size=folder.size_bytes, source="added", details=folder.details)
    assert listed.family_cell == "flux (FLUX.1 Fill)"  # the FAMILY column of `models list`
    # a Flux.1 folder holding a Fill transformer (in 384, out 64) is one too; plain Flux.1 is not
    other = tmp_path / "other"
    shutil.copytree(fill["components"], other)
    index = json.loads((other / "model_index.json").read_text()) | {"_class_name": "FluxPipeline"}
    (other / "model_index.json").write_text(json.dumps(index))
    assert families.folder_family(other, index) == ("flux", "flux-fill")
    assert families.folder_family(fill["flux"], {"_class_name": "FluxPipeline"})[1] != "flux-fill"
    # the single file: Flux.1 (its width is no published one, so no variant is claimed for it)
    info = model_files.inspect(fill["file"])
    assert (info.kind, info.family) == ("checkpoint", "flux")
    # the published Fill's defaults: 50 steps at guidance 30
    defaults = families.FAMILIES["flux"].defaults("flux-fill")
    assert (defaults["steps"], defaults["guidance_scale"]) == (50, 30.0)


def test_a_published_fill_file_takes_its_own_config_over_the_components_one(tmp_path):
    """A FLUX.1 Fill file with a FLUX.1 [dev] folder as its components: the bundled Fill config (384 inputs)."""
    from desktop_app.engine.transformer_file import _other_inputs

    parts = tmp_path / "dev" / "transformer"
    parts.mkdir(parents=True)
    (parts / "config.json").write_text(json.dumps({"in_channels": 64}))
    assert _other_inputs(tmp_path / "dev", "flux-fill") and not _other_inputs(tmp_path / "dev", "flux-dev")
    (parts / "config.json").write_text(json.dumps({"in_channels": 384, "out_channels": 64}))
    assert not _other_inputs(tmp_path / "dev", "flux-fill") and _other_inputs(tmp_path / "dev", "flux-dev")


# ---- inpainting and outpainting ---------------------------------------------------------------------------------


def test_fill_inpaints_with_its_own_pipeline_and_keeps_the_outside(fill, engine, start, tmp_path):
    mask = square_mask(tmp_path / "mask.png")
    result, events = run(engine, request(fill["folder"], seed=9, init_image=str(start), strength=1.0,
                                         mask=str(mask), mask_blur=2))
    assert isinstance(events[-1], Finished) and result.images[0].size == (SIZE, SIZE)
    assert type(engine.model.pipe).__name__ == "FluxFillPipeline"
    change = np.abs(levels(result.images[0]) - levels(Image.open(start))).max(axis=-1)
    assert change[outside(feather=2)].max() <= 1
    left, top, right, bottom = BOX
    assert change[top:bottom, left:right].mean() > 1  # the random model repainted it
    assert any(isinstance(e, StageStarted) and e.detail.startswith("inpaint: 6 of 6 steps") for e in events)
    assert all(p.preview is not None for p in events if isinstance(p, Progress))
    assert result.recipe.family == "flux"
    # the same request again: the same picture
    again, _ = run(engine, request(fill["folder"], seed=9, init_image=str(start), strength=1.0, mask=str(mask),
                                   mask_blur=2))
    assert np.array_equal(levels(again.images[0]), levels(result.images[0]))


def test_fill_outpaints_and_keeps_the_start_image(fill, engine, start):
    width, height, borders = outpaint_size((SIZE, SIZE), (16, 0, 0, 16), 16)
    made = request(fill["folder"], seed=9, width=width, height=height, init_image=str(start), strength=1.0,
                   outpaint=borders, mask_blur=2)
    result, events = run(engine, made)
    assert isinstance(events[-1], Finished) and result.images[0].size == (width, height)
    left, top, inner_w, inner_h = made.outpaint_area()
    picture = levels(result.images[0])
    kept = picture[top + 2:top + inner_h - 2, left + 2:left + inner_w - 2]
    assert np.abs(kept - levels(Image.open(start))[2:-2, 2:-2]).max() <= 1
    assert any(isinstance(e, StageStarted) and e.detail.startswith("outpaint:") for e in events)


@pytest.mark.parametrize(("changes", "field", "job"), [
    ({}, "init_image", "text to image"),
    ({"init_image": "START", "strength": 0.5}, "mask", "image to image"),
])
def test_text_to_image_and_image_to_image_are_refused_in_one_line(fill, engine, start, changes, field, job):
    changes = {k: str(start) if v == "START" else v for k, v in changes.items()}
    with pytest.raises(RequestError) as caught:
        run(engine, request(fill["folder"], **changes))
    message = str(caught.value)
    assert caught.value.field == field and "\n" not in message
    assert message == f"{field}: {flux_fill.needs_a_mask(job)}"
    assert "FLUX.1 Fill models only inpaint and outpaint, so they need a start image and a mask" in message
    assert f"for {job} use a FLUX.1 [dev]" in message


# ---- a single transformer file ----------------------------------------------------------------------------------


def test_a_fill_transformer_file_with_components_inpaints_as_the_folder_does(fill, engine, start, tmp_path):
    mask = square_mask(tmp_path / "mask.png")
    values = dict(seed=9, init_image=str(start), strength=0.8, mask=str(mask), mask_blur=0)
    expected, _ = run(engine, request(fill["folder"], **values))
    components.set_for_family("flux", fill["components"])
    result, events = run(engine, request(fill["file"], **values))
    assert isinstance(events[-1], Finished)
    assert engine.model.components == fill["components"].resolve()
    assert engine.model.pipe.transformer.config.in_channels == 384
    assert np.abs(levels(result.images[0]) - levels(expected.images[0])).max() <= 1
    change = np.abs(levels(result.images[0]) - levels(Image.open(start))).max(axis=-1)
    assert change[outside()].max() <= 1
    with pytest.raises(RequestError, match=r"FLUX\.1 Fill models only inpaint .* for text to image"):
        run(engine, request(fill["file"]))

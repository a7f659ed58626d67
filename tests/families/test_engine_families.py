"""The engine runs the transformer families (issue 16) as it runs the SD UNets: the tiny random model of each
(tests/tiny_families.py) generates through Engine.run with a preview after every step, seeds that reproduce
(image k of a batch is seed + k alone), cancel within a step, the family in the recipe, and its own rules (sizes
of its multiple, no negative prompt where it takes none, its sampler). A family this version does not run yet is
refused before any weights load; the command line writes a PNG for each family."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from PIL import Image
from tiny_families import build_family

from desktop_app.engine.events import Cancelled, Finished, Progress
from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import ModelError, RequestError

# tiny folder name -> (the family the engine reports, the sampler it runs, a size it accepts)
RUN = {
    "sd3": ("sd3", "Euler", 32), "flux": ("flux", "Euler", 32), "chroma": ("chroma", "Euler", 32),
    "sana": ("sana", "Euler", 64), "z-image": ("z-image", "Euler", 32), "pixart": ("pixart-sigma", "DPM++ 2M", 32),
    "sana-sprint": ("sana-sprint", "Euler", 32),  # its SCM scheduler; 3 steps: the plain schedule
    "qwen-image": ("qwen-image", "Euler", 32),  # real guidance (true_cfg_scale), its normalised VAE's preview
    "flux2-klein": ("flux2-klein", "Euler", 32),  # 128-channel patchified tokens, batch-norm statistics
}
# flow-matching Euler at the asked size (Sana and Sana Sprint draw at their resolution bins and resize at the end)
FLOW = [name for name, (family, sampler, _) in RUN.items() if sampler == "Euler" and not family.startswith("sana")]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("families")
    built = {name: build_family(name, root / name) for name in RUN}
    # FLUX.2 [dev] (not run yet): its folder's index and an unread weights file are enough to be refused
    dev = root / "flux2-dev"
    (dev / "transformer").mkdir(parents=True)
    (dev / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"not read")
    (dev / "model_index.json").write_text(json.dumps({
        "_class_name": "Flux2Pipeline", "transformer": ["diffusers", "Flux2Transformer2DModel"],
        "vae": ["diffusers", "AutoencoderKLFlux2"],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}))
    return built | {"flux2-dev": dev}


@pytest.fixture(scope="module")
def engine():
    from desktop_app.engine.generate import Engine

    return Engine(device="cpu", preview_share=None)  # a preview after every step


def request_for(folder, name: str, **changes) -> GenerationRequest:
    _, sampler, size = RUN[name]
    values = dict(prompt="a red fox", model=str(folder), steps=3, width=size, height=size, sampler=sampler,
                  guidance_scale=3.0, seed=5)
    return GenerationRequest(**(values | changes))


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


@pytest.mark.parametrize("name", list(RUN))
def test_each_family_generates_with_previews_and_reproducible_seeds(name, folders, engine):
    events = []
    result = engine.run(request_for(folders[name], name, batch_size=2), events.append)
    assert isinstance(events[-1], Finished) and events[-1] is result
    family, _, size = RUN[name]
    assert [image.size for image in result.images] == [(size, size)] * 2
    assert result.recipe.family == family and result.recipe.to_dict()["family"] == family
    progress = [event for event in events if isinstance(event, Progress)]
    assert [(p.step, p.total, p.stage) for p in progress] == [(k, 3, "denoise") for k in (1, 2, 3)]
    assert all(p.preview is not None and p.preview.size == (size, size) for p in progress)
    # the second image of the batch is seed 6 alone (batched matrix products may round one level apart)
    alone = engine.run(request_for(folders[name], name, seed=6), lambda event: None)
    assert np.abs(pixels(alone.images[0]) - pixels(result.images[1])).max() <= 2
    assert np.abs(pixels(result.images[0]) - pixels(result.images[1])).max() > 2  # the seeds differ


@pytest.mark.parametrize("name", FLOW)
def test_the_last_preview_is_the_image(name, folders, engine):
    """At the last flow-matching step x0 is where the sample lands: the preview, unpacked and un-normalised
    as each family's pipeline decodes, must be the final image."""
    events = []
    result = engine.run(request_for(folders[name], name, steps=4), events.append)
    last = [event for event in events if isinstance(event, Progress)][-1].preview
    assert np.abs(pixels(last) - pixels(result.images[0])).mean() < 1.0


def test_cancel_stops_a_flow_model_within_a_step(folders, engine):
    cancel, events = threading.Event(), []

    def emit(event):
        events.append(event)
        if isinstance(event, Progress) and event.step == 1:
            cancel.set()

    assert engine.run(request_for(folders["flux"], "flux", steps=6), emit, cancel) is None
    assert isinstance(events[-1], Cancelled)
    assert max(event.step for event in events if isinstance(event, Progress)) == 1


@pytest.mark.parametrize("changes, field", [
    ({"negative_prompt": "blurry"}, "negative_prompt"),  # Flux takes none
    ({"width": 40}, "width"),  # Flux packs 2x2 latents: multiples of 16
    ({"sampler": "DPM++ 2M"}, "sampler"),  # flow matching: the model's own Euler
    ({"hires_scale": 2.0}, "hires_scale"),
])
def test_what_flux_cannot_do_is_refused_naming_the_field(changes, field, folders, engine):
    with pytest.raises(RequestError) as caught:
        engine.run(request_for(folders["flux"], "flux", **changes), lambda event: None)
    assert caught.value.field == field


def test_sd3_takes_a_negative_prompt(folders, engine):
    result = engine.run(request_for(folders["sd3"], "sd3", negative_prompt="blurry"), lambda event: None)
    assert result.recipe.request.negative_prompt == "blurry"


def test_a_family_not_run_yet_is_refused_before_its_weights_load(folders, engine, monkeypatch):
    import diffusers

    def never(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", never)
    with pytest.raises(ModelError, match=r"FLUX\.2 \[dev\]: recognised, but this version"):
        engine.run(GenerationRequest(prompt="a fox", model=str(folders["flux2-dev"]), width=32, height=32,
                                     sampler="Euler"), lambda event: None)


def test_the_declared_defaults_are_the_familys(folders):
    from desktop_app.models.resolve import declared_defaults

    flux = declared_defaults(str(folders["flux"]))
    assert (flux["sampler"], flux["steps"], flux["guidance_scale"], flux["width"]) == ("Euler", 28, 3.5, 1024)
    assert "sampler" not in declared_defaults(str(folders["pixart"]))  # an epsilon model: the usual samplers


@pytest.mark.parametrize("name", ["flux", "sd3", "pixart"])
def test_the_command_line_writes_a_png_naming_the_family(name, folders, tmp_path, capsys):
    from desktop_app.cli import main

    out = tmp_path / f"{name}.png"
    size = str(RUN[name][2])
    assert main(["generate", "a cat", "--model", str(folders[name]), "--steps", "2", "--width", size,
                 "--height", size, "--out", str(out)]) == 0
    recipe = json.loads(Image.open(out).text["recipe"])
    assert recipe["family"] == RUN[name][0] and recipe["steps"] == 2
    assert recipe["sampler"] == RUN[name][1]  # the family's own, though none was given


@pytest.mark.parametrize("name, extra, says", [
    ("flux2-dev", [], "is FLUX.2 [dev]: recognised, but this version"),
    ("flux", ["--negative", "blurry"], "negative_prompt: Flux.1 models take no negative prompt"),
])
def test_the_command_line_refuses_before_loading(name, extra, says, folders, tmp_path, capsys):
    from desktop_app.cli import main

    out = tmp_path / "x.png"
    assert main(["generate", "a cat", "--model", str(folders[name]), "--width", "32", "--height", "32",
                 "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert says in err and "load:" not in err and not out.exists()


@pytest.mark.parametrize("name", ["sd3", "flux"])
def test_linear_previews_use_the_familys_own_factors(name, folders):
    from desktop_app.engine.generate import Engine
    from desktop_app.engine.preview import LinearPreview

    engine = Engine(device="cpu", preview_share=None, preview_mode="linear")
    events = []
    engine.run(request_for(folders[name], name, steps=2), events.append)
    assert isinstance(engine.preview_decoder(engine.model), LinearPreview)
    assert engine.preview_decoder(engine.model).factors.shape == (16, 3)
    assert all(event.preview is not None for event in events if isinstance(event, Progress))

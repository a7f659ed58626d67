"""ControlNets on the flow-matching families (issue 17): a Flux ControlNet on a tiny random Flux.1 and an SD3
ControlNet on a tiny random SD3 (tests/tiny_flow_controlnets.py). Weight 0 (or a start/end outside the steps)
gives the plain picture, a weight changes it, several run at once, image k of a batch is seed + k's, the same
request gives the same picture, the recipe records them; a ControlNet of another family (or another size of
the family) is refused in one line before its weights load, and a family with no ControlNet pipeline too."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from tiny_controlnets import build_sd_with_controlnets, control_picture
from tiny_flow_controlnets import build_flow_with_controlnets, build_flux_controlnet, build_sd3_controlnet

from desktop_app.engine.events import Progress, StageStarted
from desktop_app.engine.recipe import Recipe
from desktop_app.engine.request import ControlChoice, GenerationRequest
from desktop_app.errors import ModelError, RequestError
from desktop_app.models.controlnet_folder import check_controls, read_controlnet

FAMILIES = ("flux", "sd3")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("flow-controlnet")
    found = build_flow_with_controlnets(root)
    found["flux-control-b"] = build_flux_controlnet(root / "flux-depth", 5)
    found["sd3-control-b"] = build_sd3_controlnet(root / "sd3-depth", 6)
    sd = build_sd_with_controlnets(root / "sd", names=("sd15-canny",))
    found.update({"sd1": sd["model"], "sd1-control": sd["sd15-canny"]})
    found["picture"] = control_picture(root / "picture.png")
    return found


def ask(tiny, family, *controls, **changes) -> GenerationRequest:
    values = dict(prompt="a red cat", width=32, height=32, steps=4, seed=11, sampler="Euler", guidance_scale=3.0,
                  model=str(tiny[family]), controls=tuple(controls))
    return GenerationRequest(**(values | changes))


def control(tiny, name, **changes) -> ControlChoice:
    return ControlChoice(**({"model": str(tiny[name]), "image": str(tiny["picture"])} | changes))


def levels(a: Image.Image, b: Image.Image) -> int:
    """The largest difference of one channel of one pixel, in levels (0..255)."""
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


@pytest.fixture(scope="module")
def plain(engine, tiny):
    return {family: engine.run(ask(tiny, family), lambda event: None).images[0] for family in FAMILIES}


@pytest.mark.parametrize("family", FAMILIES)
def test_a_controlnet_steers_the_family_and_weight_zero_gives_the_plain_picture(generate, tiny, plain, family):
    name = f"{family}-control"
    off, _ = generate(ask(tiny, family, control(tiny, name, weight=0)))
    assert levels(off.images[0], plain[family]) <= 1
    steered, events = generate(ask(tiny, family, control(tiny, name, weight=1.0)))
    assert levels(steered.images[0], plain[family]) > 8
    progress = events.of(Progress)
    assert [p.step for p in progress] == [1, 2, 3, 4] and all(p.preview is not None for p in progress)
    denoise = [e.detail for e in events.of(StageStarted) if e.stage == "denoise"]
    folder = tiny[name].name
    assert f"ControlNet {folder} (weight 1, steps 0-1, none)" in denoise[0]
    record, = steered.recipe.control_models
    assert record["name"] == folder and len(record["hash"]) == 10 and record["weight"] == 1.0
    # the same request again: the same picture (the ControlNet stays loaded; its image's latents are not drawn
    # at random)
    again, events = generate(ask(tiny, family, control(tiny, name, weight=1.0)))
    assert levels(again.images[0], steered.images[0]) == 0
    assert not [e for e in events.of(StageStarted) if e.stage == "load" and f"ControlNet {folder} (" in e.detail]


@pytest.mark.parametrize("family", FAMILIES)
def test_start_and_end_outside_the_steps_give_the_plain_picture(generate, tiny, plain, family):
    outside, _ = generate(ask(tiny, family, control(tiny, f"{family}-control", start=0.9, end=1.0)))
    assert levels(outside.images[0], plain[family]) <= 1
    late, _ = generate(ask(tiny, family, control(tiny, f"{family}-control", start=0.5, end=1.0)))
    assert levels(late.images[0], plain[family]) > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_two_controlnets_at_once_and_each_image_of_a_batch_is_its_seed_alone(generate, tiny, plain, family):
    first, second = control(tiny, f"{family}-control"), control(tiny, f"{family}-control-b", weight=0.7)
    alone, _ = generate(ask(tiny, family, first))
    both, _ = generate(ask(tiny, family, first, second))
    assert min(levels(both.images[0], other) for other in (alone.images[0], plain[family])) > 0
    assert [r["weight"] for r in both.recipe.control_models] == [1.0, 0.7]
    only_first, _ = generate(ask(tiny, family, first, control(tiny, f"{family}-control-b", weight=0)))
    assert levels(only_first.images[0], alone.images[0]) <= 1
    batch, _ = generate(ask(tiny, family, first, batch_size=2))
    next_seed, _ = generate(ask(tiny, family, first, seed=12))
    assert batch.seeds == [11, 12] and levels(batch.images[1], next_seed.images[0]) <= 1
    assert levels(batch.images[0], alone.images[0]) <= 1


def test_canny_changes_what_a_flux_controlnet_sees_and_the_recipe_reruns(generate, tiny, tmp_path):
    from desktop_app.studio.png_recipe import read_recipe, save_png

    as_is, _ = generate(ask(tiny, "flux", control(tiny, "flux-control")))
    edges, _ = generate(ask(tiny, "flux", control(tiny, "flux-control", weight=0.8, start=0.25,
                                                  preprocessor="canny")))
    assert levels(as_is.images[0], edges.images[0]) > 0
    data = json.loads(json.dumps(edges.recipe.to_dict()))
    assert data["controls"] == [{"model": str(tiny["flux-control"]), "image": str(tiny["picture"]), "weight": 0.8,
                                 "start": 0.25, "end": 1.0, "preprocessor": "canny"}]
    assert Recipe.from_dict(data).control_models == edges.recipe.control_models
    path = save_png(edges.images[0], tmp_path / "out.png", edges.recipe.to_dict())
    rerun, _ = generate(GenerationRequest.from_dict(read_recipe(path)["request"]))
    assert levels(rerun.images[0], edges.images[0]) <= 1


def _never(*args, **kwargs):
    raise AssertionError("the ControlNet's weights were loaded")


@pytest.mark.parametrize(("model", "name", "words"), [
    ("flux", "sd1-control", "is for Stable Diffusion 1.x; the model tiny-flux is Flux.1"),
    ("flux", "sd3-control", "is for Stable Diffusion 3.x; the model tiny-flux is Flux.1"),
    ("sd3", "flux-control", "is for Flux.1; the model tiny-sd3 is Stable Diffusion 3.x"),
    ("sd1", "flux-control", "is for Flux.1; the model tiny-sd1 is Stable Diffusion 1.x"),
])
def test_a_controlnet_of_another_family_is_refused_in_one_line_before_it_loads(engine, tiny, monkeypatch, model,
                                                                                name, words):
    import diffusers

    for kind in ("ControlNetModel", "SD3ControlNetModel", "FluxControlNetModel"):
        monkeypatch.setattr(getattr(diffusers, kind), "from_pretrained", _never)
    with pytest.raises(ModelError) as caught:
        engine.run(ask(tiny, model, control(tiny, name)), lambda event: None)
    assert words in str(caught.value) and "\n" not in str(caught.value)
    with pytest.raises(ModelError, match=words):  # the torch-free check the command line and window make
        check_controls([control(tiny, name)], str(tiny[model]), tiny[model].name)


def test_a_controlnet_for_another_size_of_the_family_is_refused(engine, tiny, tmp_path):
    wide = build_flux_controlnet(tmp_path / "flux-wide", num_attention_heads=4)
    with pytest.raises(ModelError, match=r"for another size of Flux.1 than the model tiny-flux: "
                                         r"num_attention_heads 4 \(the model's 2\)"):
        check_controls([control(tiny, "flux-control", model=str(wide))], str(tiny["flux"]), "tiny-flux")
    with pytest.raises(ModelError, match="another size of Flux.1"):
        engine.run(ask(tiny, "flux", control(tiny, "flux-control", model=str(wide))), lambda event: None)


def test_a_union_controlnet_is_refused_when_it_is_read(tmp_path):
    union = build_flux_controlnet(tmp_path / "flux-union", num_mode=3)
    with pytest.raises(ModelError, match="is a union ControlNet"):
        read_controlnet(str(union))


def test_a_family_without_controlnets_is_refused_in_one_line(engine, tiny, tmp_path):
    from tiny_families import build_family

    chroma = build_family("chroma", tmp_path / "tiny-chroma")
    request = GenerationRequest(prompt="a red cat", width=32, height=32, steps=2, seed=1, sampler="Euler",
                                model=str(chroma), controls=(control(tiny, "flux-control"),))
    with pytest.raises(RequestError) as caught:
        engine.run(request, lambda event: None)
    assert caught.value.field == "controls" and "\n" not in str(caught.value)
    assert str(caught.value).endswith("ControlNets run on Stable Diffusion 1.x, 2.x, SDXL, SD3 and Flux.1 models "
                                      "here; the model tiny-chroma is Chroma")
    with pytest.raises(ModelError, match="is for Flux.1; the model tiny-chroma is Chroma"):
        check_controls([control(tiny, "flux-control")], str(chroma), "tiny-chroma")

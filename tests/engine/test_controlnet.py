"""ControlNet (issue 17) on a tiny random SD 1.x model with tiny ControlNets made from its UNet
(tests/tiny_controlnets.py): a ControlNet changes the picture, weight 0 and a start/end outside the steps give
the plain picture, two run at once, previews, seeds and cancel work, Canny is OpenCV's, a ControlNet for another
family is refused in one line before it loads, the request's checks, and the recipe round-trips."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
from PIL import Image
from tiny_controlnets import build_sd_with_controlnets, control_picture

from desktop_app.engine import control_job
from desktop_app.engine.control_images import CANNY_HIGH, CANNY_LOW, control_image
from desktop_app.engine.events import Cancelled, Progress, StageStarted
from desktop_app.engine.recipe import Recipe
from desktop_app.engine.request import ControlChoice, GenerationRequest
from desktop_app.errors import ModelError, RequestError


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("controlnet")
    found = build_sd_with_controlnets(root)
    found["picture"] = control_picture(root / "picture.png")
    return found


@pytest.fixture(scope="module")
def sd_request(tiny):
    def make(*controls, **changes):
        values = dict(prompt="a red cat", width=32, height=32, steps=4, seed=11, model=str(tiny["model"]),
                      controls=tuple(controls))
        return GenerationRequest(**(values | changes))

    return make


@pytest.fixture(scope="module")
def plain(engine, sd_request):
    return engine.run(sd_request(), lambda event: None).images[0]


def control(tiny, name="canny-a", **changes) -> ControlChoice:
    return ControlChoice(**({"model": str(tiny[name]), "image": str(tiny["picture"])} | changes))


def levels(a: Image.Image, b: Image.Image) -> int:
    """The largest difference of one channel of one pixel, in levels (0..255)."""
    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def test_a_controlnet_changes_the_picture_with_previews_and_its_recipe(generate, sd_request, tiny, plain):
    result, events = generate(sd_request(control(tiny, weight=1.0)))
    assert levels(result.images[0], plain) > 8
    progress = events.of(Progress)
    assert [p.step for p in progress] == [1, 2, 3, 4] and all(p.preview is not None for p in progress)
    denoise = [e.detail for e in events.of(StageStarted) if e.stage == "denoise"]
    assert "ControlNet canny-a (weight 1, steps 0-1, none)" in denoise[0]
    record, = result.recipe.control_models
    assert record["name"] == "canny-a" and len(record["hash"]) == 10 and record["preprocessor"] == "none"
    import hashlib

    assert record["image_sha256"] == hashlib.sha256(tiny["picture"].read_bytes()).hexdigest()
    assert (record["weight"], record["start"], record["end"]) == (1.0, 0.0, 1.0)
    # the same request again: the same picture (the ControlNet stays loaded)
    again, events = generate(sd_request(control(tiny, weight=1.0)))
    assert levels(again.images[0], result.images[0]) == 0
    assert not [e for e in events.of(StageStarted) if "ControlNet canny-a (" in e.detail and e.stage == "load"]


def test_weight_zero_gives_the_plain_picture(generate, sd_request, tiny, plain):
    result, _ = generate(sd_request(control(tiny, weight=0)))
    assert levels(result.images[0], plain) <= 1


def test_a_start_and_end_outside_the_steps_give_the_plain_picture(generate, sd_request, tiny, plain):
    full, _ = generate(sd_request(control(tiny)))
    outside, _ = generate(sd_request(control(tiny, start=0.9, end=1.0)))  # 4 steps begin at 0, .25, .5, .75
    assert levels(outside.images[0], plain) <= 1
    late, _ = generate(sd_request(control(tiny, start=0.5, end=1.0)))  # the last two steps only
    assert levels(late.images[0], plain) > 0 and levels(late.images[0], full.images[0]) > 0


def test_two_controlnets_run_at_once_each_with_its_weight(generate, sd_request, tiny, plain):
    a, _ = generate(sd_request(control(tiny, "canny-a")))
    b, _ = generate(sd_request(control(tiny, "canny-b", weight=0.7)))
    both, events = generate(sd_request(control(tiny, "canny-a"), control(tiny, "canny-b", weight=0.7)))
    assert min(levels(both.images[0], other) for other in (a.images[0], b.images[0], plain)) > 0
    assert [r["name"] for r in both.recipe.control_models] == ["canny-a", "canny-b"]
    assert [r["weight"] for r in both.recipe.control_models] == [1.0, 0.7]
    denoise = [e.detail for e in events.of(StageStarted) if e.stage == "denoise"]
    assert "ControlNets canny-a (weight 1" in denoise[0]
    # the second at weight 0: the first's picture
    only_a, _ = generate(sd_request(control(tiny, "canny-a"), control(tiny, "canny-b", weight=0)))
    assert levels(only_a.images[0], a.images[0]) <= 1


def test_each_image_of_a_batch_is_its_seed_alone(generate, sd_request, tiny):
    batch, _ = generate(sd_request(control(tiny), batch_size=2))
    second, _ = generate(sd_request(control(tiny), seed=12))
    assert batch.seeds == [11, 12] and levels(batch.images[1], second.images[0]) <= 1


def test_cancel_stops_a_controlnet_run_within_a_step(engine, sd_request, tiny):
    cancel, events = threading.Event(), []

    def emit(event):
        events.append(event)
        if isinstance(event, Progress) and event.step == 1:
            cancel.set()

    assert engine.run(sd_request(control(tiny), steps=6), emit, cancel) is None
    assert [e.step for e in events if isinstance(e, Progress)] == [1] and isinstance(events[-1], Cancelled)


def test_canny_is_opencvs_canny_at_the_request_size(tiny, tmp_path):
    import cv2

    made, sha256 = control_image(str(tiny["picture"]), "canny", (32, 32))
    grey = np.asarray(Image.open(tiny["picture"]).convert("L"))
    expected = cv2.Canny(grey, CANNY_LOW, CANNY_HIGH)
    assert expected.any() and made.mode == "RGB"
    assert np.array_equal(np.asarray(made), np.stack([expected] * 3, -1))
    as_is, _ = control_image(str(tiny["picture"]), "none", (32, 32))
    assert np.array_equal(np.asarray(as_is), np.asarray(Image.open(tiny["picture"]).convert("RGB")))
    wide = tmp_path / "wide.png"
    Image.open(tiny["picture"]).resize((64, 32)).save(wide)
    assert control_image(str(wide), "canny", (32, 32))[0].size == (32, 32)  # fitted like a start image


def test_lineart_draws_dark_strokes_as_white_lines_on_black(tmp_path):
    drawing = Image.new("RGB", (64, 64), "white")
    from PIL import ImageDraw

    ImageDraw.Draw(drawing).line([(8, 32), (56, 32)], fill=(20, 20, 20), width=3)
    ImageDraw.Draw(drawing).rectangle([40, 4, 60, 20], fill=(200, 200, 200))  # a light flat area: no stroke
    path = tmp_path / "drawing.png"
    drawing.save(path)
    made, _ = control_image(str(path), "lineart", (64, 64))
    lines = np.asarray(made)[..., 0].astype(int)
    assert made.mode == "RGB" and made.size == (64, 64)
    assert lines[32, 16:48].min() >= 100  # the stroke, bright
    assert lines[50:, :].max() <= 10 and lines[:12, :30].max() <= 10  # white paper far from it, black
    assert lines[12, 50] < lines[32, 30]  # a flat light area's inside is not a stroke
    assert GenerationRequest(prompt="a cat", controls=(ControlChoice(model="m", image=str(path),
                                                                     preprocessor="lineart"),)).controls

def test_canny_preprocessing_changes_what_the_controlnet_sees(generate, sd_request, tiny):
    as_is, _ = generate(sd_request(control(tiny)))
    edges, _ = generate(sd_request(control(tiny, preprocessor="canny")))
    assert levels(as_is.images[0], edges.images[0]) > 0
    assert edges.recipe.control_models[0]["preprocessor"] == "canny"


def test_a_controlnet_for_another_family_is_refused_before_it_loads(engine, sd_request, tiny, monkeypatch):
    from diffusers import ControlNetModel

    def never(*args, **kwargs):
        raise AssertionError("the ControlNet's weights were loaded")

    monkeypatch.setattr(ControlNetModel, "from_pretrained", never)
    events = []
    with pytest.raises(ModelError) as caught:
        engine.run(sd_request(control(tiny, "sdxl")), events.append)
    message = str(caught.value)
    assert "\n" not in message and "is for SDXL" in message and "Stable Diffusion 1.x" in message
    # and the torch-free check the command line makes says the same
    from desktop_app.models.controlnet_folder import check_controls

    with pytest.raises(ModelError, match="is for SDXL"):
        check_controls([control(tiny, "sdxl")], str(tiny["model"]), "tiny-sd1")


@pytest.mark.parametrize(("make", "words"), [
    (lambda t: control(t, weight=2.5), "weight must be a number from 0 to 2"),
    (lambda t: control(t, weight=float("nan")), "weight must be"),
    (lambda t: control(t, start=0.6, end=0.4), "0 <= start < end <= 1"),
    (lambda t: control(t, end=1.5), "0 <= start < end <= 1"),
    (lambda t: control(t, preprocessor="softedge"), "unknown ControlNet preprocessor"),
    (lambda t: control(t, model=""), "must name a model"),
])
def test_a_bad_control_is_refused_when_it_is_built(tiny, make, words):
    with pytest.raises(RequestError, match=words) as caught:
        make(tiny)
    assert caught.value.field == "controls"


def test_the_request_checks_its_control_images_and_combinations(tiny, sd_request, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    with pytest.raises(RequestError, match="not an image"):
        sd_request(control(tiny, image=str(text)))
    with pytest.raises(RequestError, match="no such image file"):
        sd_request(control(tiny, image=str(tmp_path / "gone.png")))
    with pytest.raises(RequestError, match="at most 4"):
        sd_request(*[control(tiny)] * 5)
    # a start image is taken (the engine checks the family: tests/engine/test_controlnet_image.py)
    assert sd_request(control(tiny), init_image=str(tiny["picture"])).init_image == str(tiny["picture"])


def test_a_folder_that_is_not_a_controlnet_is_refused_in_one_line(engine, sd_request, tiny, tmp_path):
    with pytest.raises(ModelError, match="is not a ControlNet: its config.json names a UNet2DConditionModel"):
        engine.run(sd_request(control(tiny, model=str(tiny["model"] / "unet"))), lambda event: None)
    with pytest.raises(ModelError, match="not a ControlNet folder: it has no config.json"):
        engine.run(sd_request(control(tiny, model=str(tmp_path))), lambda event: None)


def test_the_recipe_round_trips_through_json_and_the_png(generate, sd_request, tiny, tmp_path):
    from desktop_app.studio.png_recipe import read_recipe, save_png

    result, _ = generate(sd_request(control(tiny, weight=0.8, start=0.25, end=0.75, preprocessor="canny")))
    data = json.loads(json.dumps(result.recipe.to_dict()))
    assert data["controls"] == [{"model": str(tiny["canny-a"]), "image": str(tiny["picture"]), "weight": 0.8,
                                 "start": 0.25, "end": 0.75, "preprocessor": "canny"}]
    back = Recipe.from_dict(data)
    assert back.request == result.recipe.request and back.control_models == result.recipe.control_models
    path = save_png(result.images[0], tmp_path / "out.png", result.recipe.to_dict())
    found = read_recipe(path)
    assert found["source"] == "desktop-app" and found["info"]["control_models"][0]["name"] == "canny-a"
    again = GenerationRequest.from_dict(found["request"])
    assert again.controls == result.recipe.request.controls
    rerun, _ = generate(again)
    assert levels(rerun.images[0], result.images[0]) <= 1


def test_a_damaged_controls_entry_is_named(tmp_path):
    from desktop_app.studio.png_recipe import recipe_problem

    assert recipe_problem({"prompt": "x", "controls": "canny"}) == "controls is text, not a list"
    assert "weight" in recipe_problem({"prompt": "x", "controls": [{"model": "a", "image": "b", "weight": "x"}]})
    assert recipe_problem({"prompt": "x", "controls": [{"model": "a", "image": "b", "weight": 1}]}) is None


def test_unloading_the_model_frees_its_controlnets(generate, sd_request, tiny, engine):
    generate(sd_request(control(tiny)))
    assert control_job.loaded_count() == 1
    engine.unload()
    assert control_job.loaded_count() == 0


def test_an_sdxl_controlnet_steers_an_sdxl_model(generate, tiny, tiny_xl):
    def xl(*controls):
        return GenerationRequest(prompt="a red cat", width=32, height=32, steps=4, seed=11, sampler="Euler",
                                 model=str(tiny_xl["base"]), controls=tuple(controls))

    plain_xl, _ = generate(xl())
    steered, events = generate(xl(control(tiny, "sdxl")))
    assert levels(steered.images[0], plain_xl.images[0]) > 8
    assert all(p.preview is not None for p in events.of(Progress))
    off, _ = generate(xl(control(tiny, "sdxl", weight=0)))
    assert levels(off.images[0], plain_xl.images[0]) <= 1
    with pytest.raises(ModelError, match="is for Stable Diffusion 1.x; the model tiny-sdxl is SDXL"):
        generate(xl(control(tiny)))

"""`desktop-app edit IMAGE INSTRUCTION --model NAME_OR_PATH --out PATH` (issue 17) on the tiny random edit models
of each family that edits (tests/tiny_edit_models.py: FLUX.1 Kontext, Qwen-Image-Edit, FLUX.2 [klein]), through the
real command line's main(): a PNG of the image's shape whose recipe holds the job, the instruction and the input's
sha256; the same seed makes the same image, another input image another one; cancel stops within a step; bad input
exits 2 with one line before any model loads."""

from __future__ import annotations

import hashlib
import json
import threading

import numpy as np
import pytest
from PIL import Image
from tiny_edit_models import EDIT_FAMILIES, build_edit_model
from tiny_families import build_family

from desktop_app.cli import main

SIZE = (80, 64)  # multiples of 16, at least 64 a side (FLUX.2's smallest reference image)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("edit-models")
    built = {name: build_edit_model(name, root / name) for name in EDIT_FAMILIES}
    built["flux"] = build_family("flux", root / "flux")  # FLUX.1 [dev]'s pipeline: not an edit release
    return built


@pytest.fixture
def images(tmp_path):
    found = {}
    for name, seed in (("a", 0), ("b", 1)):
        found[name] = tmp_path / f"{name}.png"
        pixels = np.random.default_rng(seed).integers(0, 256, (SIZE[1], SIZE[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(found[name])
    found["small"] = tmp_path / "small.png"
    Image.new("RGB", (48, 80), "white").save(found["small"])
    found["text"] = tmp_path / "notes.png"
    found["text"].write_text("not a picture")
    return found


def edit(image, instruction, model, out, *extra) -> int:
    return main(["edit", str(image), instruction, "--model", str(model), "--out", str(out), "--seed", "5",
                 "--steps", "2", "--device", "cpu", *extra])


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("name", list(EDIT_FAMILIES))
def test_edit_writes_a_png_with_its_recipe_and_a_seed_makes_it_again(name, models, images, tmp_path, capsys):
    first, again, other = (tmp_path / f"{stem}.png" for stem in ("first", "again", "other"))
    assert edit(images["a"], "make it night", models[name], first) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and "denoise: edit with" in err
    with Image.open(first) as image:
        assert image.size == SIZE
        recipe = json.loads(image.text["recipe"])
    assert recipe["job"] == "edit" and recipe["instruction"] == "make it night"
    assert recipe["image"] == str(images["a"])
    assert recipe["image_sha256"] == hashlib.sha256(images["a"].read_bytes()).hexdigest()
    assert recipe["family"] == EDIT_FAMILIES[name] and recipe["model"] == str(models[name])
    assert (recipe["seed"], recipe["steps"]) == (5, 2) and isinstance(recipe["guidance_scale"], float)
    assert edit(images["a"], "make it night", models[name], again) == 0
    assert np.array_equal(pixels(first), pixels(again))  # the same seed, the same image
    assert edit(images["b"], "make it night", models[name], other) == 0
    # another image in, another image out (the tiny random models' attention to it is weak: not by much)
    assert not np.array_equal(pixels(first), pixels(other))
    capsys.readouterr()
    assert main(["info", str(first)]) == 0
    assert "Prompt: make it night" in capsys.readouterr().out


def test_edit_is_cancelled_within_a_step(models, images):
    from desktop_app.engine.edit_job import run_edit
    from desktop_app.engine.edit_request import EditRequest
    from desktop_app.engine.events import Cancelled, Progress
    from desktop_app.engine.generate import Engine

    cancel, events = threading.Event(), []

    def emit(event):
        events.append(event)
        if isinstance(event, Progress):
            cancel.set()

    request = EditRequest(image=str(images["a"]), instruction="make it night", model=str(models["flux2-klein"]),
                          seed=1, steps=4)
    assert run_edit(Engine(device="cpu"), request, emit, cancel) is None
    assert sum(isinstance(event, Progress) for event in events) == 1 and isinstance(events[-1], Cancelled)


BAD = {  # what is given -> what the one line says
    "unreadable image": (lambda i, m, t: [i["text"], "x", m["flux2-klein"]], "is not an image that can be read"),
    "missing image": (lambda i, m, t: [t / "gone.png", "x", m["flux2-klein"]], "no such image file"),
    "small image": (lambda i, m, t: [i["small"], "x", m["flux2-klein"]], "48x80 pixels: too small to edit"),
    "empty instruction": (lambda i, m, t: [i["a"], "  ", m["flux2-klein"]], "INSTRUCTION is empty"),
    "a family that cannot edit": (lambda i, m, t: [i["a"], "x", m["embedded"]],
                                  "the embedded model, which cannot edit an image by an instruction; edit with "
                                  "FLUX.1 Kontext, Qwen-Image-Edit"),
    "not an edit release": (lambda i, m, t: [i["a"], "x", m["flux"]],
                            "is Flux.1 (FluxPipeline), not its edit release (FLUX.1 Kontext)"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_with_one_line_before_loading(case, models, images, tiny_model_dir, tmp_path, capsys):
    given, says = BAD[case]
    image, instruction, model = given(images, {**models, "embedded": tiny_model_dir}, tmp_path)
    out = tmp_path / "out.png"
    assert edit(image, instruction, model, out) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0] and "load:" not in err and not out.exists()


@pytest.mark.parametrize("where, says", [("file/out.png", "is a file, not a folder"),
                                         ("a.png", "is the input image"), ("out.jpg", "use a .png name")])
def test_an_output_that_cannot_be_written_exits_2(where, says, models, images, tmp_path, capsys):
    (tmp_path / "file").write_text("a file where a folder should be")
    before = images["a"].read_bytes()
    assert edit(images["a"], "make it night", models["flux2-klein"], tmp_path / where) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and says in lines[0]
    assert images["a"].read_bytes() == before and not (tmp_path / "out.jpg").exists()


def test_edit_folders_with_generate(models, tmp_path, capsys):
    """A FLUX.1 Kontext folder draws from text at the size asked (its pipeline would rescale it to a megapixel);
    a Qwen-Image-Edit folder, whose pipeline needs an image, is refused in one line that names `edit`."""
    out = tmp_path / "kontext.png"
    assert main(["generate", "a cat", "--model", str(models["flux-kontext"]), "--width", "32", "--height", "32",
                 "--steps", "2", "--seed", "1", "--device", "cpu", "--out", str(out)]) == 0
    with Image.open(out) as image:
        assert image.size == (32, 32) and json.loads(image.text["recipe"])["family"] == "flux"
    capsys.readouterr()
    refused = tmp_path / "qwen.png"
    assert main(["generate", "a cat", "--model", str(models["qwen-image-edit"]), "--width", "32", "--height",
                 "32", "--steps", "2", "--device", "cpu", "--out", str(refused)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(errors) == 1 and "desktop-app edit IMAGE INSTRUCTION" in errors[0] and not refused.exists()


def test_an_edit_says_what_it_was_made_from(models, images, tmp_path, capsys, user_home):
    """info names the job and its input with its sha256; the credentials say edited, the input the parent; the
    creation record walks back to the input and describes the edit; the recipe reads back as an EditRecipe."""
    from desktop_app.engine.edit_request import EditRecipe
    from desktop_app.engine.recipe import recipe_from_dict

    out = tmp_path / "night.png"
    assert edit(images["a"], "make it night", models["flux2-klein"], out) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--record"]) == 0
    text = capsys.readouterr().out
    digest = hashlib.sha256(images["a"].read_bytes()).hexdigest()
    assert "Job: edit by the instruction above" in text and f"(sha256 {digest})" in text
    assert 'by the instruction "make it night"' in text
    assert main(["info", str(out), "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["info"]["job"] == "edit" and found["info"]["image_sha256"] == digest
    if found["c2pa"]["state"] != "absent":  # credentials on (c2pa-python installed)
        claims = found["c2pa"]["claims"]
        assert [action["action"] for action in claims["actions"]] == ["c2pa.opened", "c2pa.edited"]
        assert [item["relationship"] for item in claims["ingredients"]] == ["parentOf"]
    with Image.open(out) as image:
        assert isinstance(recipe_from_dict(json.loads(image.text["recipe"])), EditRecipe)

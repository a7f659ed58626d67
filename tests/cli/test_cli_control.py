"""`desktop-app generate PROMPT --control NAME_OR_PATH:IMAGE[:WEIGHT[:START:END]]... [--control-pre canny|none]`
in a subprocess, as people run it (issue 17): a PNG whose recipe holds each ControlNet (its path, image, weight,
range and preprocessor, with its hash and the image's sha256), a ControlNet found by name in the models folder, and
bad input refused with exit code 2 and one line, before torch loads."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
from PIL import Image
from test_cli import assert_one_line_error, run_cli
from tiny_controlnets import build_sd_with_controlnets, control_picture


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-controlnet")
    found = build_sd_with_controlnets(root)
    found["picture"] = control_picture(root / "picture.png")
    return found


def generate(tiny, out, *more):
    return run_cli("generate", "a red cat", "--model", tiny["model"], "--width", 32, "--height", 32, "--steps", 3,
                   "--seed", 5, "--device", "cpu", "--out", out, *more)


def test_generate_with_two_controlnets_writes_a_png_with_their_recipe(tiny, tmp_path):
    out = tmp_path / "controlled.png"
    proc = generate(tiny, out, "--control", f"{tiny['canny-a']}:{tiny['picture']}:0.8:0:0.75",
                    "--control", f"{tiny['canny-b']}:{tiny['picture']}", "--control-pre", "canny", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "ControlNets canny-a (weight 0.8, steps 0-0.75, canny)" in proc.stderr
    assert json.loads(proc.stdout)["files"] == [str(out)]
    with Image.open(out) as image:
        recipe = json.loads(image.text["recipe"])
    assert recipe["controls"] == [
        {"model": str(tiny["canny-a"]), "image": str(tiny["picture"]), "weight": 0.8, "start": 0.0, "end": 0.75,
         "preprocessor": "canny"},
        {"model": str(tiny["canny-b"]), "image": str(tiny["picture"]), "weight": 1.0, "start": 0.0, "end": 1.0,
         "preprocessor": "canny"}]
    sha256 = hashlib.sha256(tiny["picture"].read_bytes()).hexdigest()
    assert [(r["name"], r["image_sha256"], len(r["hash"])) for r in recipe["control_models"]] == [
        ("canny-a", sha256, 10), ("canny-b", sha256, 10)]
    # `info` shows them, and the PNG's recipe makes the same request again
    info = run_cli("info", out)
    assert info.returncode == 0 and f"ControlNet: {tiny['canny-a']} with {tiny['picture']} (weight 0.8, steps " \
                                   "0-0.75, canny)" in info.stdout
    from desktop_app.engine.request import GenerationRequest
    from desktop_app.studio.png_recipe import read_recipe

    request = GenerationRequest.from_dict(read_recipe(out)["request"])
    assert [c.weight for c in request.controls] == [0.8, 1.0]


def test_a_controlnet_is_found_by_name_in_the_models_folder(tiny, tmp_path, user_home):
    shutil.copytree(tiny["canny-a"], user_home / "models" / "controlnet" / "edges")
    out = tmp_path / "named.png"
    proc = generate(tiny, out, "--control", f"edges:{tiny['picture']}:0.5")
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as image:
        recipe = json.loads(image.text["recipe"])
    assert recipe["controls"][0]["model"] == str(user_home / "models" / "controlnet" / "edges")
    assert recipe["control_models"][0]["name"] == "edges" and recipe["controls"][0]["preprocessor"] == "none"


def test_a_controlnet_with_a_start_image_and_a_mask_inpaints_and_records_both(tiny, tmp_path):
    mask = tmp_path / "mask.png"
    square = Image.new("L", (32, 32), 0)
    square.paste(255, (8, 8, 24, 24))
    square.save(mask)
    out = tmp_path / "inpainted.png"
    proc = generate(tiny, out, "--init", tiny["picture"], "--mask", mask, "--strength", "1",
                    "--control", f"{tiny['canny-a']}:{tiny['picture']}:0.9")
    assert proc.returncode == 0, proc.stderr
    assert "inpaint: 3 of 3 steps" in proc.stderr and "ControlNet canny-a (weight 0.9" in proc.stderr
    with Image.open(out) as image:
        recipe = json.loads(image.text["recipe"])
    assert recipe["init_image"] == str(tiny["picture"]) and recipe["mask"] == str(mask)
    assert recipe["init_image_sha256"] == hashlib.sha256(tiny["picture"].read_bytes()).hexdigest()
    assert recipe["controls"][0]["weight"] == 0.9 and recipe["control_models"][0]["name"] == "canny-a"


@pytest.mark.parametrize(("control", "more", "words"), [
    ("{sdxl}:{picture}", (), "is for SDXL; the model tiny-sd1 is Stable Diffusion 1.x"),
    ("{canny-a}:{text}", (), "notes.png is not an image Pillow can read"),
    ("{canny-a}:{gone}", (), "gone.png: no such image file"),
    ("{canny-a}:{picture}:3", (), "--control a ControlNet's weight must be a number from 0 to 2, got 3.0"),
    ("{canny-a}:{picture}:1:0.8:0.2", (), "0 <= start < end <= 1"),
    ("{unet}:{picture}", (), "is not a ControlNet: its config.json names a UNet2DConditionModel"),
    ("no-such-controlnet:{picture}", (), "ControlNet no-such-controlnet not found"),
    ("{canny-a}", (), "give NAME_OR_PATH:IMAGE"),
    (None, ("--control-pre", "canny"), "--control-pre needs --control"),
    ("{canny-a}:{picture}", ("--control-pre", "softedge"), "invalid choice"),
])
def test_bad_control_input_exits_2_with_one_line(tiny, tmp_path, control, more, words):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    names = {"sdxl": tiny["sdxl"], "picture": tiny["picture"], "canny-a": tiny["canny-a"], "text": text,
             "gone": tmp_path / "gone.png", "unet": tiny["model"] / "unet"}
    given = ("--control", control.format_map(names)) if control else ()
    proc = generate(tiny, tmp_path / "out.png", *given, *more)
    assert words in assert_one_line_error(proc)
    assert not (tmp_path / "out.png").exists()

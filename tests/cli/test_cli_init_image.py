"""`desktop-app generate PROMPT --init IMAGE [--strength S] [--mask MASK] [--mask-blur PX]` in a subprocess, as
people run it (issue 17): a PNG with the start image's and the mask's hashes in its recipe, and bad input refused
with exit code 2 and one line that names the flag."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from PIL import Image
from test_cli import assert_one_line_error, run_cli


@pytest.fixture
def inputs(tmp_path):
    ramp = np.linspace(0, 255, 32).astype(np.uint8)
    start = tmp_path / "start.png"
    Image.fromarray(np.stack([np.tile(ramp, (32, 1))] * 3, -1)).save(start)
    mask = tmp_path / "mask.png"
    square = Image.new("L", (32, 32), 0)
    square.paste(255, (8, 8, 24, 24))
    square.save(mask)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    return {"start": start, "mask": mask, "text": text, "missing": tmp_path / "gone.png"}


def test_generate_inpaints_and_writes_a_png_with_its_recipe(tiny_model_dir, inputs, tmp_path):
    out = tmp_path / "inpainted.png"
    proc = run_cli("generate", "a red cat", "--model", tiny_model_dir, "--init", inputs["start"], "--strength",
                   0.75, "--mask", inputs["mask"], "--mask-blur", 2, "--width", 32, "--height", 32, "--steps", 4,
                   "--no-upscale", "--seed", 3, "--device", "cpu", "--out", out, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "inpaint: 3 of 4 steps (strength 0.75)" in proc.stderr
    assert json.loads(proc.stdout)["files"] == [str(out)]
    with Image.open(out) as image:
        recipe = json.loads(image.text["recipe"])
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert recipe["init_image"] == str(inputs["start"]) and recipe["strength"] == 0.75
    assert recipe["init_image_sha256"] == hashlib.sha256(inputs["start"].read_bytes()).hexdigest()
    assert recipe["mask_sha256"] == hashlib.sha256(inputs["mask"].read_bytes()).hexdigest()
    assert recipe["mask"] == str(inputs["mask"]) and recipe["mask_blur"] == 2
    start = np.asarray(Image.open(inputs["start"]).convert("RGB"), dtype=np.int16)
    keep = np.ones((32, 32), bool)
    keep[6:26, 6:26] = False  # the square and its 2-pixel feather
    assert np.abs(pixels - start).max(axis=-1)[keep].max() <= 1
    # a dropped PNG restores the whole job, its start image and mask included, and says so in A1111's words
    from desktop_app.studio.png_recipe import parameters_text, read_recipe

    restored = read_recipe(out)["request"]
    assert {key: restored[key] for key in ("init_image", "strength", "mask", "mask_blur")} == {
        "init_image": str(inputs["start"]), "strength": 0.75, "mask": str(inputs["mask"]), "mask_blur": 2}
    assert "Denoising strength: 0.75" in parameters_text(recipe) and "Mask blur: 2" in parameters_text(recipe)


def test_generate_image_to_image_says_how_the_start_image_was_fitted(tiny_model_dir, inputs, tmp_path):
    wide = tmp_path / "wide.png"
    Image.open(inputs["start"]).resize((64, 32)).save(wide)
    out = tmp_path / "fitted.png"
    proc = run_cli("generate", "a red cat", "--model", tiny_model_dir, "--init", wide, "--width", 32, "--height",
                   32, "--steps", 4, "--no-upscale", "--seed", 3, "--device", "cpu", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "start image 64x32 cropped to 32x32" in proc.stderr
    assert "image to image: 2 of 4 steps (strength 0.6)" in proc.stderr  # the default strength
    with Image.open(out) as image:
        assert image.size == (32, 32) and json.loads(image.text["recipe"])["strength"] == 0.6


@pytest.mark.parametrize(("extra", "expected"), [
    (["--mask", "MASK"], "--mask needs --init"),
    (["--strength", "0.5"], "--strength needs --init"),
    (["--init", "START", "--mask-blur", "3"], "--mask-blur needs --mask"),
    (["--init", "START", "--strength", "0"], "--strength must be a number above 0 and up to 1"),
    (["--init", "START", "--strength", "1.5"], "--strength must be a number above 0 and up to 1"),
    (["--init", "START", "--strength", "0.1", "--steps", "4"], "--strength 0.1 of 4 steps is no step at all"),
    (["--init", "MISSING"], "--init MISSING: no such image file"),
    (["--init", "TEXT"], "--init TEXT is not an image"),
    (["--init", "START", "--mask", "TEXT"], "--mask TEXT is not an image"),
    (["--init", "START", "--mask", "MASK", "--mask-blur", "-2"], "--mask-blur must be a whole number"),
    (["--init", "START", "--init-fit", "squash"], "argument --init-fit: invalid choice"),
])
def test_bad_image_input_exits_2_with_one_line(tiny_model_dir, inputs, tmp_path, extra, expected):
    names = {"START": inputs["start"], "MASK": inputs["mask"], "TEXT": inputs["text"],
             "MISSING": inputs["missing"]}
    extra = [str(names.get(item, item)) for item in extra]
    for name, path in names.items():
        expected = expected.replace(name, str(path))
    proc = run_cli("generate", "a red cat", "--model", tiny_model_dir, "--device", "cpu", "--out",
                   tmp_path / "never.png", *extra)
    line = assert_one_line_error(proc)
    assert expected in line, line
    assert not (tmp_path / "never.png").exists()


# ---- outpainting: --outpaint L,T,R,B -------------------------------------------------------------------------


def test_generate_outpaints_the_start_image_at_its_own_size(tiny_model_dir, inputs, tmp_path):
    out = tmp_path / "wider.png"
    proc = run_cli("generate", "a red cat", "--model", tiny_model_dir, "--init", inputs["start"], "--outpaint",
                   "16,0,8,4", "--mask-blur", 2, "--steps", 4, "--no-upscale", "--seed", 3, "--device", "cpu",
                   "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "outpaint: 4 of 4 steps (strength 1)" in proc.stderr
    # 32x32 extended by 16+8 and 0+4 is 56x36; rounded up to 56x40, the 4 more pixels at the bottom
    assert "extended by 16,0,8,8 (left,top,right,bottom) to 56x40" in proc.stderr
    with Image.open(out) as image:
        assert image.size == (56, 40)
        recipe = json.loads(image.text["recipe"])
        pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    assert recipe["outpaint"] == [16, 0, 8, 8] and recipe["strength"] == 1.0
    start = np.asarray(Image.open(inputs["start"]).convert("RGB"), dtype=np.int16)
    # the start image is where it was put, within one level, but for the 2 pixels the seam is feathered over
    assert np.abs(pixels[0:30, 18:46] - start[0:30, 2:30]).max() <= 1
    from desktop_app.studio.png_recipe import read_recipe

    assert read_recipe(out)["request"]["outpaint"] == [16, 0, 8, 8]


def test_generate_outpaint_with_a_size_fits_the_start_image_into_it(tiny_model_dir, inputs, tmp_path):
    out = tmp_path / "framed.png"
    proc = run_cli("generate", "a red cat", "--model", tiny_model_dir, "--init", inputs["start"], "--outpaint",
                   "8", "--width", 64, "--height", 48, "--strength", 0.8, "--steps", 5, "--no-upscale", "--seed",
                   3, "--device", "cpu", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert "start image 32x32 cropped to 48x32, extended by 8,8,8,8" in proc.stderr
    with Image.open(out) as image:
        assert image.size == (64, 48) and json.loads(image.text["recipe"])["strength"] == 0.8


@pytest.mark.parametrize(("extra", "expected"), [
    (["--outpaint", "8,8,8,8"], "--outpaint needs --init"),
    (["--init", "START", "--mask", "MASK", "--outpaint", "8"], "--outpaint and --mask cannot be combined"),
    (["--init", "START", "--outpaint", "8,8"], "--outpaint '8,8': give the pixels to add as L,T,R,B"),
    (["--init", "START", "--outpaint", "8,-8,8,8"], "each a whole number from 0 to 1024"),
    (["--init", "START", "--outpaint", "2000"], "each a whole number from 0 to 1024"),
    (["--init", "START", "--outpaint", "0,0,0,0"], "--outpaint 0,0,0,0: adds no pixel"),
    (["--init", "START", "--outpaint", "128"], "the model draws up to"),
    (["--init", "START", "--outpaint", "16", "--width", "32", "--height", "32"],
     "--outpaint width 32 less the 32 pixels added leaves 0 for the start image"),
    (["--init", "MISSING", "--outpaint", "8"], "--init MISSING: no such image file"),
])
def test_bad_outpaint_exits_2_with_one_line(tiny_model_dir, inputs, tmp_path, extra, expected):
    test_bad_image_input_exits_2_with_one_line(tiny_model_dir, inputs, tmp_path, extra, expected)

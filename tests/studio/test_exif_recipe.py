"""Recipes read back from JPEG and WebP: AUTOMATIC1111's ``parameters`` in the EXIF UserComment (0x9286)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from desktop_app.studio import exif_recipe, png_recipe

PARAMETERS = ("a lighthouse at dusk, <lora:film:0.6>\nNegative prompt: blurry, text\nSteps: 28, Sampler: Euler a, "
              "Schedule type: Automatic, CFG scale: 6.5, Seed: 424242, Size: 64x48, Model hash: 6ce0161689, "
              "Model: v1-5-pruned, Version: v1.10.1")


def write_with_comment(path, comment: bytes, fmt: str) -> None:
    """A file as AUTOMATIC1111 saves a JPEG or WebP: the text in the Exif sub-IFD's UserComment."""
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = comment
    Image.new("RGB", (64, 48), (90, 120, 200)).save(path, format=fmt, exif=exif)


CODINGS = {
    "unicode-be": b"UNICODE\0" + PARAMETERS.encode("utf-16-be"),  # AUTOMATIC1111 (piexif's helper)
    "unicode-le": b"UNICODE\0" + PARAMETERS.encode("utf-16-le"),  # writers that follow an "II" EXIF block
    "unicode-bom": b"UNICODE\0" + PARAMETERS.encode("utf-16"),
    "ascii": b"ASCII\0\0\0" + PARAMETERS.encode("ascii"),
    "undefined": b"\0" * 8 + PARAMETERS.encode("utf-8"),
}


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("WEBP", ".webp")])
@pytest.mark.parametrize("coding", sorted(CODINGS))
def test_automatic1111_parameters_come_back_from_exif(tmp_path, fmt, suffix, coding):
    path = tmp_path / f"lighthouse{suffix}"
    write_with_comment(path, CODINGS[coding], fmt)
    found = png_recipe.read_recipe(path)
    assert found["source"] == "parameters" and found["parameters"] == PARAMETERS
    request = found["request"]
    assert request["prompt"] == "a lighthouse at dusk," and request["negative_prompt"] == "blurry, text"
    assert (request["steps"], request["seed"], request["width"], request["height"]) == (28, 424242, 64, 48)
    assert request["guidance_scale"] == 6.5 and request["sampler"] == "Euler a"
    assert request["loras"] == [{"name": "film", "weight": 0.6}]
    assert found["info"]["model_hash"] == "6ce0161689" and found["info"]["model_name"] == "v1-5-pruned"


def test_non_latin_text_survives_both_byte_orders():
    text = "猫が月を見る\nSteps: 5, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 64x64"
    for codec in ("utf-16-be", "utf-16-le"):
        assert exif_recipe.decode_user_comment(b"UNICODE\0" + text.encode(codec), "<" if "le" in codec else ">") \
            == text


def test_our_encoder_round_trips(tmp_path):
    path = tmp_path / "ours.webp"
    Image.new("RGB", (8, 8)).save(path, exif=exif_recipe.exif_with_comment(PARAMETERS))
    with Image.open(path) as image:
        assert exif_recipe.user_comment(image) == PARAMETERS


def test_a_jpeg_without_comment_has_no_recipe(tmp_path):
    path = tmp_path / "photo.jpg"
    exif = Image.Exif()
    exif[0x010F] = "Camera maker"  # EXIF, but no UserComment
    Image.new("RGB", (8, 8)).save(path, exif=exif)
    with pytest.raises(png_recipe.NoRecipe, match="no recipe.*UserComment"):
        png_recipe.read_recipe(path)


def test_info_prints_the_recipe_of_a_jpeg(tmp_path):
    path = tmp_path / "lighthouse.jpg"
    write_with_comment(path, CODINGS["unicode-be"], "JPEG")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-m", "desktop_app", "info", str(path)], capture_output=True,
                          text=True, env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "Prompt: a lighthouse at dusk," in done.stdout and "Seed: 424242" in done.stdout
    assert "LoRA: film (weight 0.6)" in done.stdout and "AUTOMATIC1111" in done.stdout
    done = subprocess.run([sys.executable, "-m", "desktop_app", "info", str(path), "--json"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert json.loads(done.stdout)["request"]["steps"] == 28


def test_a_png_with_the_text_in_an_exif_chunk(tmp_path):
    path = tmp_path / "exif.png"
    Image.new("RGB", (8, 8)).save(path, exif=exif_recipe.exif_with_comment("a dog\nSteps: 5, Seed: 2").tobytes())
    found = png_recipe.read_recipe(path)
    assert found["request"]["prompt"] == "a dog" and found["request"]["steps"] == 5


def test_a_user_comment_of_the_wrong_type_is_no_comment():
    assert exif_recipe.decode_user_comment(4_000_000_000) == ""  # bytes(n) would allocate n bytes
    assert exif_recipe.decode_user_comment((1, 2)) == ""
    assert exif_recipe.comment_from_exif(b"garbage") == ""

"""`desktop-app generate --model SDXL --refiner REFINER [--refiner-switch X]` in a subprocess, as people run it:
a tiny SDXL base folder, and a tiny refiner as an original-layout single file whose "bundled" config is the
tiny one (DESKTOP_APP_RESOURCES)."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image
from test_cli import assert_one_line_error, run_cli
from tiny_checkpoints import REFINER, build_tiny_checkpoint, build_tiny_pipeline


@pytest.fixture(scope="module")
def tiny_xl(tmp_path_factory):
    root = tmp_path_factory.mktemp("refiner-cli")
    base = build_tiny_pipeline("sdxl")
    base.save_pretrained(root / "tiny-sdxl")
    tiny = build_tiny_checkpoint(REFINER, root / "build", base=base)
    shutil.copytree(tiny.config_dir, root / "resources" / "configs" / REFINER)
    checkpoint = shutil.copy(tiny.checkpoint, root / "my-refiner.safetensors")
    return {"base": root / "tiny-sdxl", "refiner": checkpoint, "resources": root / "resources"}


def test_generate_with_a_single_file_refiner(tiny_xl, tmp_path):
    out = tmp_path / "refined.png"
    proc = run_cli("generate", "a red cat", "--model", tiny_xl["base"], "--refiner", tiny_xl["refiner"],
                   "--refiner-switch", "0.6", "--sampler", "Euler", "--steps", 5, "--width", 32, "--height", 32,
                   "--seed", 3, "--device", "cpu", "--out", out, "--json",
                   env_changes={"DESKTOP_APP_RESOURCES": str(tiny_xl["resources"])})
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "refiner my-refiner on cpu" in proc.stderr and "denoise: refiner my-refiner: 2 steps from 60%" in \
        proc.stderr
    assert json.loads(proc.stdout)["size"] == [32, 32]
    with Image.open(out) as image:
        recipe = json.loads(image.text["recipe"])
        parameters = image.text["parameters"]
    assert recipe["refiner"] == str(tiny_xl["refiner"]) and recipe["refiner_switch"] == 0.6
    assert recipe["refiner_model"]["steps"] == [3, 2]
    assert recipe["refiner_model"]["shared"] == ["vae", "text_encoder_2"]
    assert "Refiner: my-refiner [" in parameters and "Refiner switch at: 0.6" in parameters


@pytest.mark.parametrize(("extra", "expected"), [
    (["--refiner-switch", "1.5"], "refiner_switch: must be a number between 0 and 1"),
    (["--refiner-switch", "half"], "argument --refiner-switch: invalid float value"),
    (["--refiner", "no-such-refiner"], "Unknown model"),
])
def test_bad_refiner_options_exit_2_with_one_line(tiny_xl, tmp_path, extra, expected):
    if "--refiner" not in extra:
        extra = ["--refiner", str(tiny_xl["refiner"]), *extra]
    proc = run_cli("generate", "a cat", "--model", tiny_xl["base"], "--out", tmp_path / "x.png", *extra)
    assert expected in assert_one_line_error(proc)


def test_a_switch_without_a_refiner_and_a_base_as_refiner_are_refused(tiny_xl, tmp_path):
    proc = run_cli("generate", "a cat", "--model", tiny_xl["base"], "--out", tmp_path / "x.png",
                   "--refiner-switch", "0.7")
    assert "--refiner-switch needs --refiner" in assert_one_line_error(proc)
    proc = run_cli("generate", "a cat", "--model", tiny_xl["base"], "--refiner", tiny_xl["base"], "--device",
                   "cpu", "--out", tmp_path / "x.png")
    assert "tiny-sdxl is not an SDXL refiner: it holds SDXL" in assert_one_line_error(proc)

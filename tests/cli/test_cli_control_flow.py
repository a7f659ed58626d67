"""`desktop-app generate PROMPT --model FLUX_OR_SD3 --control CONTROLNET:IMAGE[:WEIGHT]` in a subprocess, as people
run it (issue 17): on a tiny Flux.1 and a tiny SD3 with a ControlNet of their family, a PNG whose recipe holds the
ControlNet; a ControlNet of another family exits 2 with one line, before torch loads."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from test_cli import assert_one_line_error, run_cli
from tiny_controlnets import build_sd_with_controlnets, control_picture
from tiny_flow_controlnets import build_flow_with_controlnets


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-flow-controlnet")
    found = build_flow_with_controlnets(root)
    sd = build_sd_with_controlnets(root / "sd", names=("sd15-canny",))
    found.update({"sd1": sd["model"], "sd1-control": sd["sd15-canny"]})
    found["picture"] = control_picture(root / "picture.png")
    return found


def generate(tiny, family, out, *more):
    return run_cli("generate", "a red cat", "--model", tiny[family], "--width", 32, "--height", 32, "--steps", 2,
                   "--seed", 5, "--device", "cpu", "--out", out, *more)


@pytest.mark.parametrize("family", ["flux", "sd3"])
def test_generate_with_a_controlnet_of_the_family_writes_a_png_with_its_recipe(tiny, tmp_path, family):
    out = tmp_path / f"{family}.png"
    control = tiny[f"{family}-control"]
    proc = generate(tiny, family, out, "--control", f"{control}:{tiny['picture']}:0.8", "--control-pre", "canny",
                    "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"ControlNet {control.name} (weight 0.8, steps 0-1, canny)" in proc.stderr
    assert json.loads(proc.stdout)["files"] == [str(out)]
    with Image.open(out) as image:
        recipe = json.loads(image.text["recipe"])
    assert recipe["controls"] == [{"model": str(control), "image": str(tiny["picture"]), "weight": 0.8,
                                   "start": 0.0, "end": 1.0, "preprocessor": "canny"}]
    record, = recipe["control_models"]
    assert record["name"] == control.name and len(record["hash"]) == 10


@pytest.mark.parametrize(("family", "control", "words"), [
    ("flux", "sd1-control", "is for Stable Diffusion 1.x; the model tiny-flux is Flux.1"),
    ("sd3", "flux-control", "is for Flux.1; the model tiny-sd3 is Stable Diffusion 3.x"),
    ("flux", "sd3-control", "is for Stable Diffusion 3.x; the model tiny-flux is Flux.1"),
    ("sd1", "sd3-control", "is for Stable Diffusion 3.x; the model tiny-sd1 is Stable Diffusion 1.x"),
])
def test_a_controlnet_of_another_family_exits_2_with_one_line(tiny, tmp_path, family, control, words):
    proc = generate(tiny, family, tmp_path / "out.png", "--control", f"{tiny[control]}:{tiny['picture']}")
    assert words in assert_one_line_error(proc)
    assert not (tmp_path / "out.png").exists()

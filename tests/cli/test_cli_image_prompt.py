"""`desktop-app generate PROMPT --image-prompt IMAGE[:WEIGHT] --ip-adapter NAME_OR_PATH` in a subprocess, as people
run it (issue 17): a PNG whose recipe holds the image prompt (its path, weight and the adapter) that `info` shows
and that makes the same request again, an adapter found by name in the models folder, and bad input refused with
exit code 2 and one line, before torch loads."""

from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image
from test_cli import assert_one_line_error, run_cli
from tiny_checkpoints import build_tiny_pipeline
from tiny_families import build_pipeline
from tiny_ip_adapters import build_flux_ip_adapter, build_ip_adapter, prompt_picture


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-ip-adapter")
    sd1 = build_tiny_pipeline("sd1")
    sd1.save_pretrained(root / "tiny-sd1")
    flux = build_pipeline("flux")
    flux.save_pretrained(root / "tiny-flux")
    return {"model": root / "tiny-sd1", "adapter": build_ip_adapter(sd1.unet, root / "sd1"),
            "flux": root / "tiny-flux", "flux-adapter": build_flux_ip_adapter(flux.transformer, root / "xlabs"),
            "xl-adapter": build_ip_adapter(build_tiny_pipeline("sdxl").unet, root / "sdxl"),
            "picture": prompt_picture(root / "prompt.png")}


def generate(tiny, out, *more):
    return run_cli("generate", "a red cat", "--model", tiny["model"], "--width", 32, "--height", 32, "--steps", 3,
                   "--seed", 5, "--device", "cpu", "--out", out, *more)


def test_generate_with_an_image_prompt_writes_a_png_with_its_recipe(tiny, tmp_path):
    out = tmp_path / "prompted.png"
    proc = generate(tiny, out, "--image-prompt", f"{tiny['picture']}:0.8", "--ip-adapter", tiny["adapter"],
                    "--json")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "image prompt ip-adapter_tiny (weight 0.8)" in proc.stderr
    assert json.loads(proc.stdout)["files"] == [str(out)]
    with Image.open(out) as image:
        recipe = json.loads(image.text["recipe"])
    assert (recipe["image_prompt"], recipe["image_prompt_weight"], recipe["ip_adapter"]) == (
        str(tiny["picture"]), 0.8, str(tiny["adapter"]))
    # `info` shows them, and the PNG's recipe makes the same request again
    info = run_cli("info", out, "--json")
    assert info.returncode == 0, info.stderr
    request = json.loads(info.stdout)["request"]
    assert (request["image_prompt"], request["image_prompt_weight"], request["ip_adapter"]) == (
        str(tiny["picture"]), 0.8, str(tiny["adapter"]))
    from desktop_app.engine.request import GenerationRequest
    from desktop_app.studio.png_recipe import read_recipe

    again = GenerationRequest.from_dict(read_recipe(out)["request"])
    assert (again.image_prompt, again.image_prompt_weight, again.ip_adapter) == (
        str(tiny["picture"]), 0.8, str(tiny["adapter"]))


def test_an_adapter_is_found_by_name_and_the_weight_defaults(tiny, tmp_path, user_home):
    shutil.copytree(tiny["adapter"], user_home / "models" / "ip-adapter" / "tiny")
    out = tmp_path / "named.png"
    proc = generate(tiny, out, "--image-prompt", tiny["picture"], "--ip-adapter", "tiny")
    assert proc.returncode == 0, proc.stderr
    with Image.open(out) as image:
        recipe = json.loads(image.text["recipe"])
    assert recipe["ip_adapter"] == str(user_home / "models" / "ip-adapter" / "tiny")
    assert recipe["image_prompt_weight"] == 0.6


@pytest.mark.parametrize(("prompt", "adapter", "words"), [
    ("{picture}", "{xl}", "--ip-adapter: IP-Adapter ip-adapter_tiny is for SDXL (2048 wide); the model tiny-sd1 "
                          "is Stable Diffusion 1.x"),
    ("{picture}", "{flux}", "--ip-adapter: IP-Adapter ip_adapter is for Flux.1 (32 wide); the model tiny-sd1 is "
                            "Stable Diffusion 1.x"),
    ("{picture}", None, "--image-prompt needs --ip-adapter"),
    (None, "{adapter}", "--ip-adapter needs --image-prompt"),
    ("{picture}:3", "{adapter}", "--image-prompt WEIGHT must be a number from 0 to 2, got 3.0"),
    ("{gone}", "{adapter}", "gone.png: no such image file"),
    ("{text}", "{adapter}", "notes.png is not an image Pillow can read"),
    ("{picture}", "no-such-adapter", "--ip-adapter: IP-Adapter no-such-adapter not found"),
    ("{picture}", "{bare}", "has no image encoder"),
])
def test_bad_image_prompt_input_exits_2_with_one_line(tiny, tmp_path, prompt, adapter, words):
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    bare = tmp_path / "solo" / "bare"
    bare.mkdir(parents=True)
    shutil.copy(tiny["adapter"] / "ip-adapter_tiny.safetensors", bare)
    names = {"picture": tiny["picture"], "xl": tiny["xl-adapter"], "flux": tiny["flux-adapter"],
             "adapter": tiny["adapter"], "text": text,
             "gone": tmp_path / "gone.png", "bare": bare}
    given = (("--image-prompt", prompt.format_map(names)) if prompt else ()) + (
        ("--ip-adapter", adapter.format_map(names)) if adapter else ())
    proc = generate(tiny, tmp_path / "out.png", *given)
    line = assert_one_line_error(proc)
    assert words in line, line
    assert not (tmp_path / "out.png").exists()


def test_a_flux_model_takes_an_xlabs_adapter_and_refuses_an_sd_one(tiny, tmp_path):
    def flux(out, adapter):
        return run_cli("generate", "a red cat", "--model", tiny["flux"], "--width", 32, "--height", 32, "--steps",
                       2, "--seed", 5, "--device", "cpu", "--out", out, "--image-prompt", f"{tiny['picture']}:0.9",
                       "--ip-adapter", adapter)

    out = tmp_path / "flux.png"
    proc = flux(out, tiny["flux-adapter"])
    assert proc.returncode == 0, proc.stderr
    assert "image prompt ip_adapter (weight 0.9)" in proc.stderr
    with Image.open(out) as image:
        recipe = json.loads(image.text["recipe"])
    assert recipe["ip_adapter"] == str(tiny["flux-adapter"])
    assert recipe["image_prompt_model"]["name"] == "ip_adapter"
    line = assert_one_line_error(flux(tmp_path / "no.png", tiny["adapter"]))
    assert "ip-adapter_tiny is for Stable Diffusion 1.x (768 wide); the model tiny-flux is Flux.1" in line
    assert not (tmp_path / "no.png").exists()

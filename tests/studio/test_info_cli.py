"""desktop-app info IMAGE [--json], through the real entry point in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from desktop_app.studio import png_recipe


def run_cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "desktop_app", "info", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


def test_info_prints_our_recipe(tmp_path):
    recipe = {"prompt": "a red apple", "negative_prompt": "text", "width": 32, "height": 32, "steps": 4,
              "guidance_scale": 5.0, "sampler": "Euler", "seed": 9, "model": "default",
              "model_name": "emoji-mini", "model_hash": "0123456789", "device": "cpu", "dtype": "float32",
              "app_version": "0.1.0"}
    path = png_recipe.save_png(Image.new("RGB", (32, 32)), tmp_path / "a.png", recipe, seed=9)
    done = run_cli(path)
    assert done.returncode == 0, done.stderr
    assert "Prompt: a red apple" in done.stdout and "Seed: 9" in done.stdout
    assert "Model hash: 0123456789" in done.stdout
    done = run_cli(path, "--json")
    found = json.loads(done.stdout)
    assert found["source"] == "desktop-app" and found["request"]["steps"] == 4


def test_info_reads_automatic1111_text(tmp_path):
    info = PngInfo()
    info.add_text("parameters", "a cat\nSteps: 20, Sampler: Euler a, CFG scale: 7, Seed: 5, Size: 512x512, "
                                "Model hash: abc, Model: sd15")
    path = tmp_path / "a1111.png"
    Image.new("RGB", (8, 8)).save(path, pnginfo=info)
    found = json.loads(run_cli(path, "--json").stdout)
    assert found["source"] == "parameters" and found["request"]["sampler"] == "Euler a"


def test_info_refuses_a_non_image_and_an_image_without_recipe(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    done = run_cli(text)
    assert done.returncode == 2 and "not an image" in done.stderr and "Traceback" not in done.stderr
    plain = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(plain)
    done = run_cli(plain)
    assert done.returncode == 2 and "no recipe" in done.stderr
    assert done.stderr.count("\n") == 1

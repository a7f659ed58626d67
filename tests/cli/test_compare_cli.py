"""``desktop-app compare`` run as people run it (a subprocess) on the embedded model: the labelled grid is
written with a tile per cell, each the image ``generate`` makes for that cell's settings; bad axes are one line
before anything loads."""

from __future__ import annotations

import re

import numpy as np
from PIL import Image
from test_explain_cli import one_line_error, run_cli


def test_the_grid_has_a_cell_per_pair_and_each_is_generates_image(tmp_path):
    out = tmp_path / "grid.png"
    proc = run_cli("compare", "a red apple", "--x", "guidance=2,9", "--y", "prompt=red,green", "--steps", 4,
                   "--seed", 11, "--device", "cpu", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"wrote .*grid\.png: 4 images, guidance x prompt, seed 11", proc.stdout), proc.stdout
    grid = Image.open(out)
    assert grid.format == "PNG" and grid.width > 2 * 128 and grid.height > 2 * 128
    single = tmp_path / "one.png"
    made = run_cli("generate", "a green apple", "--guidance", 9, "--steps", 4, "--seed", 11, "--device", "cpu",
                   "--no-upscale", "--out", single)
    assert made.returncode == 0, made.stderr
    # the bottom-right cell is "a green apple" at guidance 9: the same picture, scaled into its tile
    from desktop_app.studio.explain_figures import fit

    expected = np.asarray(fit(Image.open(single).convert("RGB"), 128)).astype(int)
    pixels = np.asarray(grid.convert("RGB")).astype(int)
    height, width = expected.shape[:2]
    found = min(np.abs(pixels[y:y + height, x:x + width] - expected).mean()
                for y in range(grid.height - height - 30, grid.height - height + 1)
                for x in range(grid.width - width - 30, grid.width - width + 1))
    assert found < 1.0, found


def test_bad_axes_are_one_line(tmp_path):
    out = tmp_path / "grid.png"
    assert "--x: sampler=Nope: unknown sampler" in one_line_error(
        run_cli("compare", "a cat", "--x", "sampler=Euler,Nope", "--out", out))
    assert "--x: lora=1: the lora axis sets the first LoRA's weight" in one_line_error(
        run_cli("compare", "a cat", "--x", "lora=1", "--out", out))
    assert "unknown setting colour" in one_line_error(run_cli("compare", "a cat", "--x", "colour=1", "--out", out))
    assert not out.exists()

"""``desktop-app upscale INPUT OUTPUT``: the file it writes, --json, and exit codes 0 / 2 / 1."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from desktop_app import cli

from test_cli import assert_one_line_error, run_cli


@pytest.fixture
def shipped(tmp_path, tiny_model_dir, monkeypatch):
    """Resources whose embedded model has the tiny upscaler (the real one may still be in training)."""
    target = tmp_path / "res" / "models" / "emoji-mini" / "upscaler" / "model.safetensors"
    target.parent.mkdir(parents=True)
    shutil.copy(tiny_model_dir / "upscaler" / "model.safetensors", target)
    monkeypatch.setenv("DESKTOP_APP_RESOURCES", str(tmp_path / "res"))
    return target


@pytest.fixture
def photo(tmp_path):
    path = tmp_path / "photo.png"
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((30, 50, 4)) * 255).astype(np.uint8), "RGBA").save(path)
    return path


def test_upscale_writes_the_file_and_reports_json(shipped, photo, tmp_path):
    out = tmp_path / "out" / "big.png"
    proc = run_cli("upscale", photo, out, "--json", "--tile", 64, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "upscale:" in proc.stderr
    report = json.loads(proc.stdout)
    assert report["file"] == str(out) and report["output_size"] == [200, 120] and report["scale"] == 4
    assert report["upscaler"]["name"] == "default" and len(report["upscaler"]["sha256"]) == 10
    assert report["tiles"] == 2 and report["megapixels_per_second"] > 0  # one tile, colour then alpha
    with Image.open(out) as image:
        assert image.size == (200, 120) and image.mode == "RGBA"
        recipe = json.loads(image.text["recipe"])
    assert recipe["job"] == "upscale" and recipe["upscaler"]["sha256"] == report["upscaler"]["sha256"]


def test_not_an_image_exits_2_with_one_line(shipped, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("shopping list")
    line = assert_one_line_error(run_cli("upscale", bad, tmp_path / "out.png"))
    assert "notes.png" in line and "not an image" in line


def in_process(capsys, *args):
    code = cli.main(["upscale", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_smaller_scale_into_a_folder_as_jpeg_and_as_png(shipped, photo, tmp_path, capsys):
    code, out, err = in_process(capsys, photo, f"{tmp_path}/folder/", "--scale", 2)
    assert code == 0, err
    with Image.open(tmp_path / "folder" / "photo-x2.png") as image:
        assert image.size == (100, 60)
    code, out, err = in_process(capsys, photo, tmp_path / "small.jpg", "--scale", 1.5, "--tile", 0)
    assert code == 0, err
    with Image.open(tmp_path / "small.jpg") as image:
        assert image.size == (75, 45) and image.format == "JPEG"


@pytest.mark.parametrize("args,needle", [
    (["{missing}", "{out}"], "not a file"),
    (["{photo}", "{out}", "--scale", "8"], "scale"),
    (["{photo}", "{out}", "--scale", "0"], "--scale"),
    (["{photo}", "{out}", "--tile", "5"], "tile"),
    (["{photo}", "{tmp}/out.gif"], ".png"),
    (["{photo}", "{out}", "--model", "no-such-upscaler"], "unknown upscaler"),
    (["{photo}", "{out}", "--model", "{tmp}/nothing.pth"], "does not exist"),
    (["{photo}", "{out}", "--model", "{hostile}"], "not a safetensors file"),
    (["{photo}", "{out}", "--scale", "four"], "invalid float"),
])
def test_bad_input_exits_2_with_one_line_and_no_traceback(shipped, photo, tmp_path, capsys, args, needle):
    import torch

    hostile = tmp_path / "renamed.safetensors"
    torch.save({"weight": torch.zeros(2)}, hostile)
    values = {"photo": photo, "out": tmp_path / "out.png", "missing": tmp_path / "missing.png", "tmp": tmp_path,
              "hostile": hostile}
    try:
        code, out, err = in_process(capsys, *[arg.format(**values) for arg in args])
    except SystemExit as exc:  # argparse's own errors exit straight away
        code, err = exc.code, capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.splitlines() if "error" in line]  # stage lines ("load: ...") may come first
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in err
    assert not (tmp_path / "out.png").exists()


def test_an_unexpected_failure_exits_1_and_logs_the_traceback(shipped, photo, tmp_path, capsys, monkeypatch,
                                                             user_home):
    from desktop_app.engine.generate import Engine

    def broken(self, *args, **kwargs):
        raise RuntimeError("the GPU caught fire")

    monkeypatch.setattr(Engine, "upscale", broken)
    code, out, err = in_process(capsys, photo, tmp_path / "out.png")
    assert code == 1 and "the GPU caught fire" in err and "Traceback" not in err
    assert "RuntimeError" in (user_home / "logs" / "errors.log").read_text()


def test_generate_upscale_takes_a_name_from_the_upscalers_folder(tiny_model_dir, tmp_path, capsys):
    from desktop_app import paths

    shutil.copy(tiny_model_dir / "upscaler" / "model.safetensors", paths.upscalers_dir() / "4x-tiny.safetensors")
    out = tmp_path / "cat.png"
    code = cli.main(["generate", "a cat", "--out", str(out), "--model", str(tiny_model_dir), "--seed", "1",
                     "--upscale", "4x-tiny", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    with Image.open(out) as image:
        assert image.size == (128, 128)
        recipe = json.loads(image.text["recipe"])
    assert recipe["upscale"] == "4x-tiny" and recipe["upscaler"]["name"] == "4x-tiny"


def test_generate_hires_fix_on_a_stable_diffusion_model(tiny_sd_dir, tmp_path, capsys):
    out = tmp_path / "hires.png"
    code = cli.main(["generate", "a red cat", "--out", str(out), "--model", str(tiny_sd_dir), "--seed", "2",
                     "--width", "32", "--height", "32", "--steps", "2", "--hires-scale", "2",
                     "--hires-strength", "0.5", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    with Image.open(out) as image:
        assert image.size == (64, 64)
        assert "Hires upscale: 2.0, Hires upscaler: Lanczos" in image.text["parameters"]
    code = cli.main(["generate", "a red cat", "--out", str(out), "--model", str(tiny_sd_dir),
                     "--hires-scale", "9"])
    err = capsys.readouterr().err
    assert code == 2 and "hires_scale" in err and "Traceback" not in err

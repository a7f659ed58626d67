"""`desktop-app generate --model FILE.safetensors`: an original-layout single file through the whole app path
(request, engine, loader, single_file), with the "bundled" sd1 config replaced by one matching the tiny model."""

from __future__ import annotations

import json
import shutil

from PIL import Image
from tiny_checkpoints import build_tiny_checkpoint

from desktop_app import cli


def test_generate_from_a_single_file_checkpoint(tmp_path, monkeypatch, capsys):
    tiny = build_tiny_checkpoint("sd1", tmp_path / "build")
    resources = tmp_path / "resources"
    shutil.copytree(tiny.config_dir, resources / "configs" / "sd1")
    monkeypatch.setenv("DESKTOP_APP_RESOURCES", str(resources))
    checkpoint = tmp_path / "my-model.safetensors"
    shutil.copy(tiny.checkpoint, checkpoint)
    out = tmp_path / "cat.png"
    code = cli.main(["generate", "a red cat", "--model", str(checkpoint), "--out", str(out), "--width", "32",
                     "--height", "32", "--steps", "2", "--seed", "4", "--device", "cpu", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Traceback" not in captured.err
    report = json.loads(captured.out)
    assert report["model"] == "my-model"
    with Image.open(out) as image:
        assert image.size == (32, 32)
        assert json.loads(image.text["recipe"])["model"] == str(checkpoint)

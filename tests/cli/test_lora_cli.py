"""``desktop-app generate --lora NAME[:WEIGHT]``: parsing, exit codes, and a real run on the tiny SD model."""

from __future__ import annotations

import pytest
from tiny_loras import lora_state, save_kohya_lora

from desktop_app import cli
from desktop_app.cli.lora import parse_lora
from desktop_app.errors import RequestError
from desktop_app.engine.request import LoraChoice
from desktop_app.studio.png_recipe import read_recipe


@pytest.mark.parametrize("text,expected", [
    ("style", LoraChoice("style", 1.0)), ("style:0.6", LoraChoice("style", 0.6)),
    ("my:lora:-1.5", LoraChoice("my:lora", -1.5)),
    ("C:\\loras\\x.safetensors", LoraChoice("C:\\loras\\x.safetensors")),
])
def test_name_and_weight(text, expected):
    assert parse_lora(text) == expected


@pytest.mark.parametrize("text", ["style:heavy", "style:9", ":0.5"])
def test_bad_weights_are_request_errors(text):
    with pytest.raises(RequestError):
        parse_lora(text)


def test_a_bad_weight_exits_2(tmp_path, capsys):
    assert cli.main(["generate", "x", "--out", str(tmp_path / "a.png"), "--lora", "style:heavy"]) == 2
    assert "weight" in capsys.readouterr().err


def test_an_unknown_lora_exits_2_with_one_line(tmp_path, capsys):
    assert cli.main(["generate", "x", "--out", str(tmp_path / "a.png"), "--lora", "nowhere"]) == 2
    err = capsys.readouterr().err
    assert "Unknown LoRA" in err or "not found" in err
    assert "Traceback" not in err


def test_generate_with_a_lora_writes_it_into_the_recipe(tmp_path, tiny_sd_dir, capsys):
    from desktop_app import paths

    save_kohya_lora(lora_state(tiny_sd_dir / "unet"), paths.loras_dir() / "tiny-style.safetensors")
    out = tmp_path / "out.png"
    code = cli.main(["generate", "a red cat", "--out", str(out), "--model", str(tiny_sd_dir), "--width", "32",
                     "--height", "32", "--steps", "2", "--seed", "5", "--device", "cpu", "--no-upscale",
                     "--lora", "tiny-style:0.5"])
    assert code == 0, capsys.readouterr().err
    recipe = read_recipe(out)
    text = str(recipe)
    assert "tiny-style" in text and "0.5" in text

"""``desktop-app info`` lists the nearest training images of an image the embedded model made (issue 18): by the
contrastive image tower, with their similarity, source and licence; none for another model's image."""

from __future__ import annotations

import json

import pytest

from desktop_app import cli


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    out = tmp_path_factory.mktemp("made")
    paths = {"embedded": out / "apple.png", "tiny": out / "tiny.png"}
    assert cli.main(["generate", "a red apple", "--out", str(paths["embedded"]), "--steps", "4", "--seed", "5",
                     "--device", "cpu", "--no-upscale"]) == cli.EXIT_OK
    return paths


def info(capsys, *args):
    code = cli.main(["info", *map(str, args)])
    captured = capsys.readouterr()
    assert code == cli.EXIT_OK, captured.err
    return captured.out


def test_info_lists_the_nearest_training_images_of_an_embedded_image(made, capsys):
    out = info(capsys, made["embedded"])
    lines = out.splitlines()
    start = next(k for k, line in enumerate(lines) if line.startswith("Nearest training images"))
    listed = lines[start + 1:start + 4]
    assert [line.strip()[:2] for line in listed] == ["1.", "2.", "3."]
    assert all("similarity 0." in line or "similarity 1." in line for line in listed)
    assert all(any(licence in line for licence in ("MIT", "Apache-2.0", "CC-BY-4.0")) for line in listed)
    assert "closer than" in lines[start + 4]

    found = json.loads(info(capsys, "--json", "--nearest", "5", made["embedded"]))
    sims = [item["similarity"] for item in found["nearest"]["neighbours"]]
    assert len(sims) == 5 and sims == sorted(sims, reverse=True)
    assert found["nearest"]["training_images"] > 9000


def test_no_nearest_images_when_asked_for_none_or_for_another_models_image(made, tiny_model_dir, tmp_path, capsys):
    assert "Nearest training images" not in info(capsys, "--nearest", "0", made["embedded"])
    other = tmp_path / "tiny.png"
    assert cli.main(["generate", "a red apple", "--out", str(other), "--model", str(tiny_model_dir),
                     "--steps", "1", "--device", "cpu", "--no-upscale"]) == cli.EXIT_OK
    capsys.readouterr()
    out = info(capsys, other)
    assert "Prompt: a red apple" in out and "Nearest training images" not in out

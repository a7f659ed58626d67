"""``desktop-app generate`` signs what it writes; ``desktop-app info`` checks the content credentials."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

pytest.importorskip("c2pa")

from desktop_app import cli  # noqa: E402
from desktop_app.studio import credentials, png_recipe  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def signing_home(tmp_path_factory):
    return tmp_path_factory.mktemp("signing-home")


@pytest.fixture(scope="module")
def generated(tiny_model_dir, signing_home, tmp_path_factory):
    """One image made by the real command on the tiny model, in a user folder kept for the module."""
    out = tmp_path_factory.mktemp("made") / "lighthouse.png"
    previous = os.environ.get("DESKTOP_APP_HOME")
    os.environ["DESKTOP_APP_HOME"] = str(signing_home)
    try:
        code = cli.main(["generate", "a lighthouse at dusk", "--out", str(out), "--model", str(tiny_model_dir),
                         "--steps", "1", "--seed", "11", "--device", "cpu", "--no-upscale"])
    finally:
        if previous is None:
            os.environ.pop("DESKTOP_APP_HOME", None)
        else:
            os.environ["DESKTOP_APP_HOME"] = previous
    assert code == cli.EXIT_OK
    return out


@pytest.fixture(autouse=True)
def in_signing_home(signing_home, user_home, monkeypatch):
    monkeypatch.setenv("DESKTOP_APP_HOME", str(signing_home))


def info(capsys, *args):
    code = cli.main(["info", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_info_says_a_generated_image_is_valid_and_untrusted(generated, capsys):
    code, out, err = info(capsys, generated)
    assert code == cli.EXIT_OK, err
    assert "Prompt: a lighthouse at dusk" in out, "the recipe is still read"
    line = next(line for line in out.splitlines() if line.startswith("Content credentials:"))
    assert line.startswith("Content credentials: valid, not trusted") and "local certificate" in line
    assert "Action: c2pa.created (trainedAlgorithmicMedia)" in out

    code, out, _ = info(capsys, "--json", generated)
    found = json.loads(out)
    checked = found["c2pa"]
    assert code == cli.EXIT_OK and checked["valid"] is True and checked["trusted"] is False
    signed = checked["claims"]["assertions"][credentials.RECIPE_LABEL]
    assert signed["seed"] == 11 and signed["prompt"] == "a lighthouse at dusk"
    assert signed["model_name"] == found["info"]["model_name"]
    assert checked["claims"]["claim_generator"].startswith("desktop-app ")


def test_info_says_a_changed_image_is_invalid(generated, tmp_path, capsys):
    data = bytearray(generated.read_bytes())
    at = data.index(b"IDAT") + 4
    data[at + 10] ^= 0xFF  # one byte of the compressed pixels
    changed = tmp_path / "changed.png"
    changed.write_bytes(bytes(data))
    code, out, _ = info(capsys, changed)
    assert code == cli.EXIT_OK
    assert "Content credentials: INVALID (the file was changed after signing)" in out
    code, out, _ = info(capsys, "--json", changed)
    checked = json.loads(out)["c2pa"]
    assert checked["state"] == "invalid" and checked["valid"] is False and checked["trusted"] is False


def test_info_says_when_there_are_none(generated, tmp_path, capsys):
    plain = tmp_path / "plain.png"
    with Image.open(generated) as image:
        png_recipe.save_png(image, plain, json.loads(image.text["recipe"]))  # the recipe, no manifest
    code, out, _ = info(capsys, plain)
    assert code == cli.EXIT_OK and "Content credentials: none (the file holds no C2PA manifest)" in out
    code, out, _ = info(capsys, "--json", plain)
    assert json.loads(out)["c2pa"] == {"state": "absent", "valid": False, "trusted": False,
                                       "why": "the file holds no C2PA manifest"}


def test_info_checks_credentials_in_an_image_without_a_recipe(tmp_path, capsys):
    from desktop_app.studio import outputs

    photo = tmp_path / "photo.jpg"
    image = Image.new("RGB", (24, 24), (30, 60, 90))
    outputs.write_signed(photo, lambda stream: image.save(stream, format="JPEG"), "JPEG", None)
    code, out, _ = info(capsys, photo)
    assert code == cli.EXIT_OK
    assert out.startswith("Recipe: none") and "Content credentials: valid, not trusted" in out
    unsigned = tmp_path / "plain.jpg"
    image.save(unsigned)
    code, _, err = info(capsys, unsigned)
    assert code == 2 and "no recipe" in err, "neither a recipe nor credentials: as before"


def test_without_the_package_generate_still_writes_and_says_so_once(tiny_model_dir, tmp_path):
    blocker = tmp_path / "blocker"
    blocker.mkdir()
    (blocker / "c2pa.py").write_text("raise ImportError('c2pa-python is not installed')\n")
    out = tmp_path / "kites.png"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(blocker), str(REPO)]),
               DESKTOP_APP_HOME=str(tmp_path / "home"))
    proc = subprocess.run([sys.executable, "-m", "desktop_app", "generate", "two kites", "--out", str(out),
                           "--model", str(tiny_model_dir), "--steps", "1", "--batch", "2", "--seed", "3",
                           "--device", "cpu", "--no-upscale"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    said = [line for line in proc.stderr.splitlines() if "content credentials are off" in line]
    assert len(said) == 1 and "c2pa-python" in said[0], proc.stderr
    written = sorted(out.parent.glob("kites*.png"))
    assert len(written) == 2
    assert [png_recipe.read_recipe(path)["request"]["seed"] for path in written] == [3, 4]
    assert all(credentials.verify(path)["state"] == "absent" for path in written)

"""``desktop-app upscale`` into a JPEG or WebP: the IPTC XMP mark (digital source type trainedAlgorithmicMedia)
is in the file, as in every PNG, and the C2PA credentials signed after it still check out and cover it."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("c2pa")

from desktop_app import cli  # noqa: E402
from desktop_app.studio import credentials, png_recipe  # noqa: E402
from desktop_app.studio.image_metadata import read_image_text  # noqa: E402



@pytest.fixture
def shipped(tmp_path, tiny_model_dir, monkeypatch):
    """Resources whose embedded model has the tiny upscaler (as in test_upscale_cli)."""
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


@pytest.fixture(scope="module")
def signing_home(tmp_path_factory):
    return tmp_path_factory.mktemp("signing-home")


@pytest.fixture(autouse=True)
def in_signing_home(signing_home, user_home, monkeypatch):
    monkeypatch.setenv("DESKTOP_APP_HOME", str(signing_home))
    monkeypatch.setitem(credentials._state, "off", None)
    monkeypatch.setitem(credentials._state, "told", set())


@pytest.mark.parametrize("suffix,image_format", [(".jpg", "JPEG"), (".webp", "WEBP")])
def test_an_upscaled_jpeg_or_webp_carries_the_xmp_mark_and_valid_credentials(shipped, photo, tmp_path, capsys,
                                                                             suffix, image_format):
    out = tmp_path / f"big{suffix}"
    code = cli.main(["upscale", str(photo), str(out), "--scale", "2", "--tile", "0", "--device", "cpu"])
    assert code == cli.EXIT_OK, capsys.readouterr().err
    capsys.readouterr()
    with Image.open(out) as image:
        assert image.format == image_format and image.size == (100, 60)
        xmp = image.info.get("xmp")
        assert isinstance(xmp, bytes), f"no XMP in the {image_format}: {sorted(image.info)}"
    text = xmp.decode()
    assert f"<Iptc4xmpExt:DigitalSourceType>{png_recipe.DIGITAL_SOURCE_TYPE}<" in text and "desktop-app" in text
    # the metadata reader gives it under the PNG chunk's name
    assert png_recipe.DIGITAL_SOURCE_TYPE in read_image_text(out).chunks[png_recipe.XMP_KEY]

    checked = credentials.verify(out)
    assert checked["state"] != "absent" and checked["valid"], checked
    assert cli.main(["info", str(out), "--json"]) == cli.EXIT_OK
    shown = json.loads(capsys.readouterr().out)["c2pa"]
    assert shown["valid"] is True

    # the mark is covered by the signature: the same bytes with the XMP's tool name changed no longer verify
    data = out.read_bytes()
    at = data.find(b"<xmp:CreatorTool>desktop-app")
    assert at > 0
    changed = tmp_path / f"changed{suffix}"
    changed.write_bytes(data[:at] + data[at:].replace(b"desktop-app", b"desktop-APP", 1))
    assert credentials.verify(changed)["valid"] is False

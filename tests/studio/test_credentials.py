"""C2PA content credentials on the images the studio writes: signed with a local authority, checked back."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import struct
import sys

import pytest
from PIL import Image

pytest.importorskip("c2pa")
from cryptography import x509  # noqa: E402  (c2pa-python brings it)
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID  # noqa: E402

import desktop_app  # noqa: E402
from desktop_app.studio import credentials, local_ca, outputs, png_recipe  # noqa: E402
from desktop_app.studio import settings as app_settings  # noqa: E402

RECIPE = {"prompt": "a red kite over the sea", "negative_prompt": "", "width": 32, "height": 32, "steps": 4,
          "guidance_scale": 5.0, "sampler": "euler", "model": "tiny", "model_name": "tiny-model",
          "model_hash": "0123456789", "loras": [{"name": "ink", "weight": 0.7}],
          "lora_hashes": {"ink": "abcdef012345"}, "app_version": desktop_app.__version__}


@pytest.fixture(scope="module")
def signing_home(tmp_path_factory):
    """One user folder for the module: the authority and the signer's key are made once, by the first test."""
    return tmp_path_factory.mktemp("signing-home")


@pytest.fixture(autouse=True)
def in_signing_home(signing_home, user_home, monkeypatch):
    monkeypatch.setenv("DESKTOP_APP_HOME", str(signing_home))
    credentials._state["off"] = None
    credentials._state["told"] = set()
    yield signing_home
    credentials._state["off"] = None
    credentials._state["told"] = set()


def picture(color=(200, 40, 30), size=32) -> Image.Image:
    image = Image.new("RGB", (size, size), color)
    image.putpixel((3, 5), (1, 2, 3))
    return image


def chunks(path) -> list[tuple[bytes, int, int]]:
    """(type, offset of the data, length) of every PNG chunk."""
    data = path.read_bytes()
    found, at = [], 8
    while at < len(data):
        length, kind = struct.unpack(">I4s", data[at:at + 8])
        found.append((kind, at + 8, length))
        at += 12 + length
    return found


def test_a_saved_png_verifies_as_valid_and_untrusted_with_its_claims(tmp_path):
    path = outputs.keep_image(picture(), RECIPE, 42, tmp_path, None)
    checked = credentials.verify(path)
    assert checked["state"] == "valid" and checked["valid"] is True, checked
    assert checked["trusted"] is False, "a local certificate is on no trust list"
    claims = checked["claims"]
    assert claims["claim_generator"] == f"desktop-app {desktop_app.__version__}"
    assert {"action": "c2pa.created", "digitalSourceType": credentials.DIGITAL_SOURCE_TYPE} in claims["actions"]
    signed = claims["assertions"][credentials.RECIPE_LABEL]
    assert signed["model_hash"] == "0123456789" and signed["lora_hashes"] == {"ink": "abcdef012345"}
    assert signed["seed"] == 42 and signed["model_name"] == "tiny-model"
    assert checked["signer"]["common_name"] == local_ca.SIGNER_NAME
    # the recipe chunk, written before the manifest, is still read back, and the manifest chunk follows it
    assert png_recipe.read_recipe(path)["request"]["seed"] == 42
    kinds = [kind for kind, _, _ in chunks(path)]
    assert b"caBX" in kinds
    with Image.open(path) as image:
        assert json.loads(image.text["recipe"])["lora_hashes"] == {"ink": "abcdef012345"}
    text = credentials.describe(checked)
    assert text.startswith("Content credentials: valid, not trusted") and "local certificate" in text
    assert "Signed model: tiny-model (hash 0123456789)" in text and "Signed LoRA: ink" in text


def test_a_changed_pixel_makes_it_invalid_and_a_resave_drops_it(tmp_path):
    path = outputs.keep_image(picture(), RECIPE, 1, tmp_path, None)
    _, offset, length = next(chunk for chunk in chunks(path) if chunk[0] == b"IDAT")
    data = bytearray(path.read_bytes())
    data[offset + length // 2] ^= 0x5A
    changed = tmp_path / "changed.png"
    changed.write_bytes(bytes(data))
    checked = credentials.verify(changed)
    assert checked["state"] == "invalid" and checked["valid"] is False and checked["changed"] is True, checked
    assert "changed after signing" in credentials.describe(checked)

    resaved = tmp_path / "resaved.png"
    with Image.open(path) as image:
        image.save(resaved)
    checked = credentials.verify(resaved)
    assert checked["state"] == "absent" and checked["valid"] is False
    assert credentials.describe(checked).startswith("Content credentials: none")


def test_a_damaged_manifest_is_invalid_not_absent(tmp_path):
    path = outputs.keep_image(picture(), RECIPE, 1, tmp_path, None)
    _, offset, length = next(chunk for chunk in chunks(path) if chunk[0] == b"caBX")
    data = bytearray(path.read_bytes())
    data[offset + length // 2] ^= 0xFF  # inside the claim's signature and certificates
    damaged = tmp_path / "damaged.png"
    damaged.write_bytes(bytes(data))
    checked = credentials.verify(damaged)
    assert checked["state"] == "invalid" and checked["valid"] is False and checked["problems"], checked
    assert credentials.describe(checked).startswith("Content credentials: INVALID")


def test_the_authority_and_key_are_made_once_and_kept_private(tmp_path, in_signing_home):
    first = outputs.keep_image(picture(), RECIPE, 1, tmp_path, None)
    where = in_signing_home / local_ca.FOLDER
    files = {name: (where / name).read_bytes() for name in (local_ca.CA_FILE, local_ca.CA_KEY_FILE,
                                                            local_ca.SIGNER_FILE)}
    if os.name == "posix":
        for name in (local_ca.CA_KEY_FILE, local_ca.SIGNER_FILE):
            assert stat.S_IMODE((where / name).stat().st_mode) == 0o600, name
    local_ca.forget()  # as a new process would: read from the files, not from memory
    second = outputs.keep_image(picture((0, 90, 200)), RECIPE, 2, tmp_path, None)
    assert {name: (where / name).read_bytes() for name in files} == files, "nothing made again"
    serials = {credentials.verify(path)["signer"]["cert_serial_number"] for path in (first, second)}
    assert len(serials) == 1, "both images signed by the same certificate"


def test_the_signing_certificate_is_issued_by_the_local_authority(tmp_path, in_signing_home):
    outputs.keep_image(picture(), RECIPE, 1, tmp_path, None)
    where = in_signing_home / local_ca.FOLDER
    signer, issuer = x509.load_pem_x509_certificates((where / local_ca.SIGNER_FILE).read_bytes())
    authority = x509.load_pem_x509_certificate((where / local_ca.CA_FILE).read_bytes())
    assert issuer == authority
    assert signer.issuer != signer.subject and signer.issuer == authority.subject, "not self-signed"
    signer.verify_directly_issued_by(authority)
    usage = signer.extensions.get_extension_for_class(x509.KeyUsage)
    assert usage.critical and usage.value.digital_signature and not usage.value.key_cert_sign
    assert ExtendedKeyUsageOID.EMAIL_PROTECTION in signer.extensions.get_extension_for_class(
        x509.ExtendedKeyUsage).value
    ski = signer.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER).value
    aki = signer.extensions.get_extension_for_oid(ExtensionOID.AUTHORITY_KEY_IDENTIFIER).value
    ca_ski = authority.extensions.get_extension_for_oid(ExtensionOID.SUBJECT_KEY_IDENTIFIER).value
    assert ski.digest and aki.key_identifier == ca_ski.digest
    assert authority.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not signer.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_a_damaged_signer_file_is_made_again(tmp_path):
    chain, key = local_ca.signing_identity(tmp_path)
    (tmp_path / local_ca.SIGNER_FILE).write_bytes(b"-----BEGIN PRIVATE KEY-----\nnot a key\n")
    local_ca.forget()
    again_chain, again_key = local_ca.signing_identity(tmp_path)
    assert again_key != key and again_chain != chain
    authority = x509.load_pem_x509_certificates(chain)[1]
    assert x509.load_pem_x509_certificates(again_chain)[1] == authority, "the same authority issues it"


def test_without_the_package_the_image_is_written_and_one_line_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "c2pa", None)  # import c2pa raises ImportError
    with caplog.at_level(logging.WARNING, logger=credentials.__name__):
        paths = [outputs.keep_image(picture(), RECIPE, seed, tmp_path, None) for seed in (1, 2)]
    assert all(path.is_file() for path in paths)
    assert [png_recipe.read_recipe(path)["request"]["seed"] for path in paths] == [1, 2]
    said = [record for record in caplog.records if record.name == credentials.__name__]
    assert len(said) == 1, "said once, not once per image"
    line = said[0].getMessage()
    assert "\n" not in line and said[0].exc_info is None and "content credentials are off" in line
    assert "c2pa-python" in line and credentials.off_reason() is not None
    assert credentials.verify(paths[0])["state"] == "unchecked"
    monkeypatch.delitem(sys.modules, "c2pa")
    assert credentials.verify(paths[0])["state"] == "absent", "written without a manifest"


def test_a_failed_signing_keeps_the_image(tmp_path, monkeypatch, caplog):
    import c2pa

    def refuse(*args, **kwargs):
        raise c2pa.C2paError("the signer refused")

    monkeypatch.setattr(c2pa.Builder, "sign", refuse)
    with caplog.at_level(logging.WARNING, logger=credentials.__name__):
        path = outputs.keep_image(picture(), RECIPE, 3, tmp_path, None)
    assert png_recipe.read_recipe(path)["request"]["seed"] == 3
    monkeypatch.undo()
    assert credentials.verify(path)["state"] == "absent"
    assert len([r for r in caplog.records if "signing failed" in r.getMessage()]) == 1


def test_the_setting_turns_credentials_off(tmp_path, in_signing_home):
    settings_file = in_signing_home / "settings.json"
    data, _ = app_settings.load(settings_file)
    assert data["content_credentials"] is True, "on by default"
    app_settings.save({**data, "content_credentials": False}, settings_file)
    try:
        assert app_settings.load(settings_file)[0]["content_credentials"] is False
        path = outputs.keep_image(picture(), RECIPE, 4, tmp_path, None)
        assert credentials.verify(path)["state"] == "absent"
        assert credentials.off_reason() is None, "the user's choice, not a failure"
    finally:
        settings_file.unlink()


@pytest.mark.parametrize("image_format", ["JPEG", "WEBP"])
def test_jpeg_and_webp_carry_credentials_too(tmp_path, image_format):
    path = tmp_path / f"kite.{image_format.lower()}"
    image = picture()
    outputs.write_signed(path, lambda stream: image.save(stream, format=image_format, quality=90), image_format,
                         {**RECIPE, "seed": 5})
    checked = credentials.verify(path)
    assert checked["valid"] and not checked["trusted"], checked
    assert checked["claims"]["assertions"][credentials.RECIPE_LABEL]["seed"] == 5
    with Image.open(path) as back:
        assert back.format == image_format and back.size == image.size


def test_the_start_image_and_mask_are_ingredients(tmp_path):
    start, mask, stale = tmp_path / "start.png", tmp_path / "mask.png", tmp_path / "stale.png"
    picture((10, 200, 10)).save(start)
    Image.new("L", (32, 32), 255).save(mask)
    picture((0, 0, 0)).save(stale)
    recipe = {**RECIPE, "init_image": str(start), "mask": str(mask),
              "init_image_sha256": hashlib.sha256(start.read_bytes()).hexdigest()}
    path = outputs.keep_image(picture(), recipe, 6, tmp_path / "out", None)
    checked = credentials.verify(path)
    assert checked["valid"], checked
    assert sorted((item["title"], item["relationship"]) for item in checked["claims"]["ingredients"]) == [
        ("mask.png", "inputTo"), ("start.png", "inputTo")]
    assert "Ingredient: start.png (inputTo)" in credentials.describe(checked)
    # a start image changed since it was used is not what made the image: left out
    changed = {**recipe, "init_image": str(stale)}
    path = outputs.keep_image(picture(), changed, 7, tmp_path / "out", None)
    assert [item["title"] for item in credentials.verify(path)["claims"]["ingredients"]] == ["mask.png"]


def test_an_upscale_names_its_input_as_the_parent(tmp_path):
    source = tmp_path / "small.png"
    picture(size=16).save(source)
    recipe = {"job": "upscale", "input": str(source), "scale": 2, "app_version": desktop_app.__version__}
    path = outputs.keep_elsewhere(picture(), recipe, None, "small-x2.png")
    checked = credentials.verify(path)
    assert checked["valid"], checked
    assert [item["relationship"] for item in checked["claims"]["ingredients"]] == ["parentOf"]
    assert [action["action"] for action in checked["claims"]["actions"]][:1] == ["c2pa.opened"]

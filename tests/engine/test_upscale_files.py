"""Upscaler files: what loads (safetensors; .pth state dicts through torch.load(weights_only=True)), what is
refused and why (TorchScript, pickles that hold more than weights, disguised files), and how names resolve."""

from __future__ import annotations

import hashlib
import pickle
import shutil
import zipfile

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from desktop_app import paths
from desktop_app.models import upscaler_files
from desktop_app.errors import ModelError, RequestError
from desktop_app.engine.upscale import load_upscaler, read_state_dict, upscale_image

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:FutureWarning")


@pytest.fixture(scope="module")
def weights(tiny_model_dir):
    return load_file(tiny_model_dir / "upscaler" / "model.safetensors")


@pytest.fixture(scope="module")
def reference(tiny_model_dir):
    image = Image.new("RGB", (12, 10), (200, 40, 90))
    return image, upscale_image(load_upscaler(tiny_model_dir / "upscaler" / "model.safetensors"), image)


class Payload:
    """A pickle that runs code when it is unpickled (what weights_only=True exists to stop)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("wrap", [
    lambda sd: sd,
    lambda sd: {"params_ema": sd, "params": {k: v * 0 for k, v in sd.items()}},  # params_ema wins
    lambda sd: {"params": sd},
    lambda sd: {"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3},
])
def test_pth_state_dicts_load_like_the_safetensors_file(tmp_path, weights, reference, wrap):
    path = tmp_path / "4x-tiny.pth"
    torch.save(wrap(weights), path)
    image, expected = reference
    assert upscale_image(load_upscaler(path), image).tobytes() == expected.tobytes()


def test_the_legacy_torch_save_format_loads_too(tmp_path, weights, reference):
    path = tmp_path / "old.pth"
    torch.save({"params_ema": weights}, path, _use_new_zipfile_serialization=False)
    assert upscaler_files.sniff(path) == upscaler_files.PICKLE
    image, expected = reference
    assert upscale_image(load_upscaler(path), image).tobytes() == expected.tobytes()


def test_content_decides_a_safetensors_file_named_pth_loads(tmp_path, tiny_model_dir):
    path = tmp_path / "actually-safetensors.pth"
    shutil.copy(tiny_model_dir / "upscaler" / "model.safetensors", path)
    assert load_upscaler(path).scale == 4


def test_spandrel_file_loading_and_torch_jit_are_never_used(tmp_path, weights, monkeypatch):
    import spandrel

    def forbidden(*args, **kwargs):
        raise AssertionError("must not be called")

    monkeypatch.setattr(spandrel.ModelLoader, "load_from_file", forbidden)
    monkeypatch.setattr(torch.jit, "load", forbidden)
    torch.save({"params": weights}, tmp_path / "a.pth")
    assert load_upscaler(tmp_path / "a.pth").scale == 4
    scripted = torch.jit.script(torch.nn.Conv2d(3, 3, 3))
    scripted.save(str(tmp_path / "b.pt"))
    with pytest.raises(ModelError, match="TorchScript"):
        load_upscaler(tmp_path / "b.pt")


def hostile(tmp_path, kind, weights):
    """Write a hostile or broken file; returns (path, the words the error must contain)."""
    if kind == "pickle named .safetensors":
        path = tmp_path / "sneaky.safetensors"
        torch.save(weights, path)
        return path, "not a safetensors file"
    if kind == "legacy pickle named .safetensors":
        path = tmp_path / "sneaky-old.safetensors"
        torch.save(weights, path, _use_new_zipfile_serialization=False)
        return path, "not a safetensors file"
    if kind == "zip named .safetensors":
        path = tmp_path / "archive.safetensors"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("readme.txt", "hello")
        return path, "damaged or not a safetensors file"
    if kind == "TorchScript .pt":
        path = tmp_path / "scripted.pt"
        torch.jit.script(torch.nn.Conv2d(3, 3, 3)).save(str(path))
        return path, "TorchScript"
    if kind == "TorchScript named .safetensors":
        path = tmp_path / "scripted.safetensors"
        torch.jit.script(torch.nn.Conv2d(3, 3, 3)).save(str(path))
        return path, "TorchScript"
    if kind == "code-running pickle .pth":
        path = tmp_path / "evil.pth"
        path.write_bytes(pickle.dumps({"params": Payload(tmp_path / "pwned")}, protocol=2))
        return path, "holds more than weights"
    if kind == "random bytes .safetensors":
        path = tmp_path / "noise.safetensors"
        path.write_bytes(bytes(range(256)) * 64)
        return path, "damaged or not a safetensors file"
    if kind == "random bytes .pth":
        path = tmp_path / "noise.pth"
        path.write_bytes(b"\x13\x37" * 1000)
        return path, "not a model file"
    if kind == "empty file":
        path = tmp_path / "empty.safetensors"
        path.write_bytes(b"")
        return path, "empty file"
    if kind == "truncated safetensors":
        path = tmp_path / "cut.safetensors"
        save_file(weights, path)
        path.write_bytes(path.read_bytes()[:-500])
        return path, "damaged"
    if kind == "truncated .pth":
        path = tmp_path / "cut.pth"
        torch.save(weights, path)
        path.write_bytes(path.read_bytes()[:-2000])
        return path, "damaged"
    if kind == "not an upscaler":
        path = tmp_path / "unet-bits.safetensors"
        save_file({"down.0.attn.weight": torch.zeros(4, 4), "mid.norm.bias": torch.zeros(4)}, path)
        return path, "not an upscaler spandrel knows"
    if kind == "pickle of a list":
        path = tmp_path / "list.pth"
        torch.save([torch.zeros(2)], path)
        return path, "does not hold a state dict"
    raise AssertionError(kind)


HOSTILE = ["pickle named .safetensors", "legacy pickle named .safetensors", "zip named .safetensors",
           "TorchScript .pt", "TorchScript named .safetensors", "code-running pickle .pth",
           "random bytes .safetensors", "random bytes .pth", "empty file", "truncated safetensors",
           "truncated .pth", "not an upscaler", "pickle of a list"]


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_and_broken_files_are_refused_with_a_reason(tmp_path, weights, kind):
    path, needle = hostile(tmp_path, kind, weights)
    with pytest.raises(ModelError, match=needle) as info:
        load_upscaler(path)
    assert path.name in str(info.value)
    assert not (tmp_path / "pwned").exists()  # nothing in the file ran


def test_read_state_dict_never_unpickles_code(tmp_path):
    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps(Payload(tmp_path / "pwned"), protocol=2))
    with pytest.raises(ModelError):
        read_state_dict(path)
    assert not (tmp_path / "pwned").exists()


# ---- names -----------------------------------------------------------------------------------------------


def test_default_is_the_model_folders_own(tiny_model_dir, tiny_sd_dir):
    assert upscaler_files.resolve("default", tiny_model_dir) == tiny_model_dir / "upscaler" / "model.safetensors"
    with pytest.raises(RequestError, match="no upscaler of its own"):
        upscaler_files.resolve("default", tiny_sd_dir)


def test_default_without_a_folder_is_the_embedded_models(tmp_path, monkeypatch, tiny_model_dir):
    shipped = tmp_path / "resources" / "models" / "emoji-mini" / "upscaler" / "model.safetensors"
    shipped.parent.mkdir(parents=True)
    shutil.copy(tiny_model_dir / "upscaler" / "model.safetensors", shipped)
    monkeypatch.setenv("DESKTOP_APP_RESOURCES", str(tmp_path / "resources"))
    assert upscaler_files.resolve("default") == shipped


def test_a_bare_name_is_a_file_in_the_upscalers_folder(tiny_model_dir):
    folder = paths.upscalers_dir()
    assert folder == paths.models_dir() / "upscalers" and folder.is_dir()
    shutil.copy(tiny_model_dir / "upscaler" / "model.safetensors", folder / "4x-tiny.safetensors")
    assert upscaler_files.resolve("4x-tiny") == folder / "4x-tiny.safetensors"
    assert upscaler_files.resolve("4x-tiny.safetensors") == folder / "4x-tiny.safetensors"
    assert [p.name for p in upscaler_files.available()] == ["4x-tiny.safetensors"]
    with pytest.raises(RequestError, match="4x-tiny.safetensors") as info:  # the message lists what is there
        upscaler_files.resolve("4x-other")
    assert info.value.field == "upscale"


def test_paths_and_model_folders_resolve(tiny_model_dir, tmp_path):
    own = tiny_model_dir / "upscaler" / "model.safetensors"
    assert upscaler_files.resolve(str(own)) == own
    assert upscaler_files.resolve(str(tiny_model_dir)) == own
    with pytest.raises(RequestError, match="does not exist"):
        upscaler_files.resolve(str(tmp_path / "missing.safetensors"), field="model")


def test_the_record_has_a_short_sha256(tiny_model_dir):
    path = tiny_model_dir / "upscaler" / "model.safetensors"
    record = upscaler_files.describe("default", path)
    assert record == {"name": "default", "file": "model.safetensors",
                      "sha256": hashlib.sha256(path.read_bytes()).hexdigest()[:10]}
    assert upscaler_files.describe(str(path), path)["name"] == "tiny-embedded upscaler"

"""The one loader: the embedded format, plain diffusers folders, and clear errors for everything else."""

from __future__ import annotations

import ast
import json
import shutil
import socket
from pathlib import Path

import pytest
import torch

import desktop_app
from desktop_app.errors import ModelError
from desktop_app.engine.loader import load_model
from desktop_app.models.resolve import model_defaults

ENGINE_DIR = Path(desktop_app.__file__).parent / "engine"


def test_the_embedded_format_loads_with_minilm_and_the_upscaler(tiny_model_dir):
    model = load_model(str(tiny_model_dir), "cpu", torch.float32)
    assert model.family == "embedded" and model.display_name == "tiny-embedded"
    assert type(model.pipe.text_encoder).__name__ == "BertModel"
    assert model.pipe.text_encoder.config.use_attention_mask is True
    assert model.pipe.tokenizer.model_max_length == 16
    assert model.pipe.unet.dtype == torch.float32  # fp16 on disk, upcast for the CPU
    assert model.upscaler is not None and model.upscaler.scale == 4
    assert model.card_path == tiny_model_dir / "MODEL_CARD.md"
    assert model.vae_scale_factor == 4
    assert model.limits == {"min_size": 16, "max_size": 128}
    assert model.defaults["width"] == 32


def test_a_plain_diffusers_folder_loads_through_the_same_function(tiny_sd_dir):
    model = load_model(str(tiny_sd_dir), "cpu", torch.float32)
    assert model.family == "custom"  # cross_attention_dim 32: not a known family
    assert type(model.pipe.text_encoder).__name__ == "CLIPTextModel"
    assert model.upscaler is None and model.card_path is None


def test_loading_works_with_the_network_cut_off(tiny_model_dir, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access in a test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    model = load_model(str(tiny_model_dir), "cpu", torch.float32)
    assert model.pipe is not None


def test_a_missing_path_is_named(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(ModelError, match="Model not found: .*nowhere does not exist"):
        load_model(str(missing), "cpu", torch.float32)


def test_a_damaged_single_file_is_refused_by_content(tmp_path):
    # single files load now (engine/single_file.py); this one is inspected first and refused
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"\0" * 16)
    with pytest.raises(ModelError, match="damaged or not a safetensors file"):
        load_model(str(checkpoint), "cpu", torch.float32)


def test_a_folder_without_model_index_is_refused(tmp_path):
    with pytest.raises(ModelError, match="no model_index.json"):
        load_model(str(tmp_path), "cpu", torch.float32)


def test_a_damaged_model_index_is_reported(tmp_path):
    (tmp_path / "model_index.json").write_text("{not json")
    with pytest.raises(ModelError, match="damaged"):
        load_model(str(tmp_path), "cpu", torch.float32)


def test_damaged_weights_are_a_model_error(tiny_model_dir, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "broken")
    weights = next((copy / "unet").glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])  # a truncated download
    with pytest.raises(ModelError, match="Cannot load the model.*damaged or incomplete"):
        load_model(str(copy), "cpu", torch.float32)


def test_pickled_weights_are_not_loaded(tiny_sd_dir, tmp_path):
    copy = shutil.copytree(tiny_sd_dir, tmp_path / "pickled")
    for weights in copy.glob("*/*.safetensors"):
        weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ModelError, match="no .safetensors weights"):
        load_model(str(copy), "cpu", torch.float32)


@pytest.mark.parametrize("pipeline, network, name", [
    ("Flux2Pipeline", "Flux2Transformer2DModel", "FLUX\\.2 \\[dev\\]")])
def test_a_family_not_run_yet_is_refused_before_its_weights_load(tmp_path, monkeypatch, pipeline, network, name):
    """A transformer family this version does not run yet gets a clear message naming it, and not after loading
    gigabytes of weights (SD3, Flux and the others it runs: tests/families/test_engine_families.py)."""
    import diffusers

    folder = tmp_path / "some-model"
    (folder / "transformer").mkdir(parents=True)
    (folder / "transformer" / "diffusion_pytorch_model.safetensors").write_bytes(b"not read")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": pipeline, "transformer": ["diffusers", network],
        "vae": ["diffusers", "AutoencoderKL"], "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}))

    def never(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", never)
    with pytest.raises(ModelError, match=f"is {name}: recognised, but this version of the app does not run"):
        load_model(str(folder), "cpu", torch.float32)


def test_the_embedded_model_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("DESKTOP_APP_RESOURCES", str(tmp_path))
    with pytest.raises(ModelError, match="embedded default model is missing"):
        load_model("default", "cpu", torch.float32)


def test_an_unknown_text_encoder_package_is_refused(tiny_model_dir, tmp_path):
    copy = shutil.copytree(tiny_model_dir, tmp_path / "other")
    index = json.loads((copy / "model_index.json").read_text())
    index["_text_encoder_package"] = "some-other-encoder"
    (copy / "model_index.json").write_text(json.dumps(index))
    with pytest.raises(ModelError, match="some-other-encoder"):
        load_model(str(copy), "cpu", torch.float32)


def test_model_defaults_are_read_without_torch(tiny_model_dir, tiny_sd_dir, tmp_path):
    assert model_defaults(str(tiny_model_dir))["upscale"] == "default"
    assert model_defaults(str(tiny_model_dir))["steps"] == 3
    assert model_defaults(str(tiny_sd_dir)) == {}
    assert model_defaults(str(tmp_path / "nowhere")) == {}


def _imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_the_engine_never_imports_qt():
    files = sorted(ENGINE_DIR.glob("*.py"))
    assert len(files) >= 8
    for path in files:
        qt = _imported_modules(path) & {"PySide6", "shiboken6", "PyQt5", "PyQt6", "PySide2"}
        assert not qt, f"{path.name} imports {qt}"

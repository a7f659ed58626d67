"""A ComfyUI models folder as people keep it: transformer files in models/diffusion_models (and the older
models/unet), .safetensors and .gguf, beside single text-encoder and VAE files. `models add-folder` lists the
transformer files as models and says once why the text-encoder and VAE files are not used; the components a
family's files run with are a diffusers folder named once per family (`models components`), kept in the library
file. Torch-free: the files are headers with zero tensors, the folders only as complete as the checks read."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import save_file

from desktop_app.errors import ModelError
from desktop_app.models import components, model_library

# Flux.1 [dev] in BFL's layout (the names diffusers' single-file loader and models/families.py look for), shrunk
FLUX_BFL = {"double_blocks.0.img_attn.norm.key_norm.scale": (8,), "double_blocks.0.img_attn.qkv.weight": (24, 8),
            "img_in.weight": (8, 64), "img_in.bias": (8,), "guidance_in.in_layer.bias": (8,)}
CLIP_L = {"text_model.encoder.layers.0.self_attn.k_proj.weight": (8, 8),
          "text_model.embeddings.token_embedding.weight": (16, 8)}
VAE = {"decoder.conv_in.weight": (8, 16, 3, 3), "encoder.conv_out.weight": (32, 8, 3, 3)}


def write(path, shapes: dict, prefix: str = ""):
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({prefix + name: np.zeros(shape, dtype=np.float16) for name, shape in shapes.items()}, str(path))
    return path


def write_gguf(path, shapes: dict):
    import gguf

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "flux")
    for name, shape in shapes.items():
        writer.add_tensor(name, np.zeros(shape, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture
def comfy(tmp_path):
    root = tmp_path / "ComfyUI"
    write(root / "models/diffusion_models/flux1-dev.safetensors", FLUX_BFL)
    write(root / "models/unet/flux1-dev-comfy.safetensors", FLUX_BFL, prefix="model.diffusion_model.")
    write_gguf(root / "models/diffusion_models/flux1-dev-Q8_0.gguf", FLUX_BFL)
    write(root / "models/text_encoders/clip_l.safetensors", CLIP_L)
    write(root / "models/vae/ae.safetensors", VAE)
    return root


def diffusers_folder(where, pipeline: str = "FluxPipeline", parts=("text_encoder", "text_encoder_2", "vae")):
    """A diffusers folder as complete as the components check reads it: model_index.json, each part's folder
    with a weights file, the tokenizers' and scheduler's files."""
    index = {"_class_name": pipeline, "transformer": ["diffusers", "FluxTransformer2DModel"],
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "tokenizer": ["transformers", "CLIPTokenizer"], "tokenizer_2": ["transformers", "T5TokenizerFast"]}
    where.mkdir(parents=True)
    for part in ("text_encoder", "text_encoder_2", "vae"):  # named in the index, present where in ``parts``
        index[part] = ["diffusers", "AutoencoderKL"] if part == "vae" else ["transformers", "CLIPTextModel"]
        if part in parts:
            write(where / part / "model.safetensors", {"w": (2,)})
    for part, file in (("scheduler", "scheduler_config.json"), ("tokenizer", "vocab.json"),
                       ("tokenizer_2", "tokenizer.json")):
        (where / part).mkdir()
        (where / part / file).write_text("{}")
    (where / "model_index.json").write_text(json.dumps(index))
    return where


def test_add_folder_lists_the_transformer_files_and_says_why_not_the_text_encoders(comfy):
    scan = model_library.add_folder(comfy)
    assert scan.layout == "ComfyUI"
    found = {entry.name: (entry.kind, entry.family) for entry in scan.entries}
    assert found == {"flux1-dev": ("checkpoint", "flux"), "flux1-dev-Q8_0": ("checkpoint", "flux"),
                     "flux1-dev-comfy": ("checkpoint", "flux")}
    assert scan.skipped == []  # the text-encoder and VAE files are not models, and not scanned as such
    assert len(scan.notes) == 1 and "models/text_encoders and models/vae hold single" in scan.notes[0]
    assert "--components FOLDER" in scan.notes[0]
    # scanned whenever the library is read; a name resolves to its file
    assert model_library.resolve_model("flux1-dev-Q8_0") == str(comfy / "models/diffusion_models/"
                                                                         "flux1-dev-Q8_0.gguf")


def test_the_command_line_prints_the_files_and_the_note(comfy, capsys):
    from desktop_app.cli import main

    assert main(["models", "add-folder", str(comfy)]) == 0
    out = capsys.readouterr().out
    assert "added the ComfyUI folder" in out and "3 file(s) found" in out
    assert "  flux1-dev-Q8_0: checkpoint, Flux.1" in out
    assert "  note: models/text_encoders and models/vae hold single text-encoder and VAE files" in out


def test_a_folder_with_only_text_encoders_and_vae_lists_nothing(tmp_path):
    root = tmp_path / "comfy"
    write(root / "models/clip/clip_l.safetensors", CLIP_L)
    scan = model_library.add_folder(root)
    assert (scan.layout, scan.entries, scan.skipped) == ("ComfyUI", [], [])
    assert "models/clip hold single" in scan.notes[0]


def test_components_are_named_once_per_family_and_kept_in_the_library_file(comfy, tmp_path, capsys):
    from desktop_app.cli import main

    model_library.add_folder(comfy)
    file = comfy / "models/diffusion_models/flux1-dev.safetensors"
    with pytest.raises(ModelError, match=r"^Flux\.1 transformer file flux1-dev\.safetensors needs its text "
                                         r"encoders, tokenizers and VAE: name a Flux\.1 diffusers folder"):
        components.check_model(file)
    parts = diffusers_folder(tmp_path / "FLUX.1-dev")
    assert main(["models", "components", "flux", str(parts)]) == 0
    assert json.loads(model_library.library_path().read_text())["components"] == {"flux": str(parts.resolve())}
    assert components.check_model(file) == parts.resolve()
    assert components.check_model(comfy / "models/diffusion_models/flux1-dev-Q8_0.gguf") == parts.resolve()
    assert model_library.find("flux1-dev") is not None  # the library's other contents are unchanged
    capsys.readouterr()
    assert main(["models", "components", "flux", "--clear"]) == 0
    assert "forgot flux" in capsys.readouterr().out
    assert components.stored() == {}


@pytest.mark.parametrize("make, says", [
    (lambda where: diffusers_folder(where, parts=("text_encoder", "text_encoder_2")), "lacks vae"),
    (lambda where: diffusers_folder(where, pipeline="StableDiffusion3Pipeline"), "is Stable Diffusion 3.x, not "
                                                                                 "Flux.1"),
    (lambda where: where.mkdir() or where, "is not a diffusers model folder"),
])
def test_a_folder_that_cannot_serve_is_refused_in_one_line(make, says, tmp_path, capsys):
    from desktop_app.cli import main

    folder = make(tmp_path / "parts")
    assert main(["models", "components", "flux", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err
    assert components.stored() == {}

"""Each family is recognised from its files as people have them: a single transformer file in its makers' layout
(with and without ComfyUI's prefix) or in diffusers' layout, and a diffusers folder. Headers only: the tensors
are named and sized as published, and their data is a hole (family_headers.write_header)."""

from __future__ import annotations

import json
import shutil

import pytest
from family_headers import DIFFUSERS_TYPE, ORIGINAL, prefixed, write_header

from desktop_app.errors import ModelError
from desktop_app.models import families, model_files, single_file

VARIANTS = sorted(ORIGINAL)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("prefix", ["", "model.diffusion_model."])
def test_a_transformer_file_in_its_makers_layout(variant, prefix, tmp_path):
    family, shapes = ORIGINAL[variant]
    path = write_header(tmp_path / "sd15-pruned.safetensors", prefixed(shapes, prefix))  # the name says SD 1.5
    info = model_files.inspect(path)
    assert (info.kind, info.family, info.variant) == ("checkpoint", family, variant)
    assert info.layout == ("diffusers" if family == "qwen-image" else "original")
    assert model_files.FAMILY_NAMES[family] in info.details
    # a single transformer file runs with a components folder; PixArt's only as a folder
    expected = ("Runs with the text encoders and VAE" if family in families.SINGLE_FILES
                else "runs it as a diffusers folder, not yet as a single file" if family in families.FOLDERS_ONLY
                else "does not run it yet")
    assert expected in info.details
    assert info.tensor_count == len(shapes)


@pytest.mark.parametrize("variant", [v for v in VARIANTS if DIFFUSERS_TYPE[v]])
def test_diffusers_recognises_the_same_tensors_as_the_same_model(variant):
    """The names are the ones diffusers' single-file loader looks for: it tells the same header apart too."""
    import torch
    from diffusers.loaders.single_file_utils import infer_diffusers_model_type

    _, shapes = ORIGINAL[variant]
    tensors = {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    assert infer_diffusers_model_type(tensors) == DIFFUSERS_TYPE[variant]


def _diffusers_shapes(variant: str) -> dict[str, list[int]]:
    """The full state dict (names and shapes) of the published transformer, as save_pretrained writes it."""
    import diffusers
    import torch

    folder = single_file.bundled_transformer_config(variant) / "transformer"
    config = json.loads((folder / "config.json").read_text())
    with torch.device("meta"):
        model = getattr(diffusers, config["_class_name"]).from_config(config)
    return {name: list(tensor.shape) for name, tensor in model.state_dict().items()}


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_transformer_file_in_diffusers_layout(variant, tmp_path):
    family, _ = ORIGINAL[variant]
    shapes = _diffusers_shapes(variant)
    info = model_files.inspect(write_header(tmp_path / "diffusion_pytorch_model.safetensors", shapes))
    assert (info.kind, info.family, info.variant, info.layout) == ("checkpoint", family, variant, "diffusers")
    assert info.tensor_count == len(shapes)


def test_what_only_looks_like_a_family_is_not_taken_for_it(tmp_path):
    sana = ORIGINAL["sana-1600m"][1]
    pixart_like = {k.replace("mlp.inverted_conv.conv", "mlp.fc1"): v for k, v in sana.items()}
    pixart_like = {k: v for k, v in pixart_like.items() if k != "attention_y_norm.weight"}
    assert families.recognise(pixart_like).family == "pixart-sigma"
    # Lumina 2 has Z-Image's blocks, with the modulation at index 1
    lumina = {"layers.0.adaLN_modulation.1.weight": [9216, 256], "layers.0.attention.qkv.weight": [6912, 2304],
              "cap_embedder.1.weight": [2304, 2304]}
    assert families.recognise(lumina) is None
    # Qwen-Image 2.1 (another transformer) carries a text norm inside txt_in
    qwen21 = {**ORIGINAL["qwen-image"][1], "txt_in.text_norm.weight": [3584]}
    assert families.recognise(qwen21) is None
    # FLUX.1 Fill takes 384 input channels, FLUX.1 Depth 128: Flux.1, the one its own variant, the other none
    fill = {**ORIGINAL["flux-dev"][1], "img_in.weight": [3072, 384]}
    assert (families.recognise(fill).family, families.recognise(fill).variant) == ("flux", "flux-fill")
    depth = {**ORIGINAL["flux-dev"][1], "img_in.weight": [3072, 128]}
    assert (families.recognise(depth).family, families.recognise(depth).variant) == ("flux", "")
    # Sana 1.5 adds QK norm to Sana 1600M: Sana, with no bundled config
    sana15 = {**sana, "blocks.0.attn.q_norm.weight": [2240]}
    assert (families.recognise(sana15).family, families.recognise(sana15).variant) == ("sana", "")
    # a ControlNet of a family (diffusers' FluxControlNetModel, XLabs' BFL-layout ones) is not the family
    flux = _diffusers_shapes("flux-dev")
    assert families.recognise(flux).family == "flux"
    assert families.recognise({**flux, "controlnet_blocks.0.weight": [3072, 3072]}) is None
    assert families.recognise({**ORIGINAL["flux-dev"][1], "controlnet_blocks.0.weight": [3072, 3072]}) is None
    # an SD checkpoint and an unknown network are no transformer family
    unet = {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 768]}
    assert families.recognise(unet) is None
    assert families.recognise({"blocks.0.weight": [4, 4]}) is None


def test_an_unknown_size_keeps_the_family_without_a_variant(tmp_path):
    tiny = {k: [max(1, d // 64) for d in shape] for k, shape in ORIGINAL["flux2-klein-4b"][1].items()}
    info = model_files.inspect(write_header(tmp_path / "tiny.safetensors", tiny))
    assert (info.family, info.variant) == ("flux2-klein", "")


def _folder(tmp_path, index: dict | None, variant: str, **changes):
    folder = tmp_path / "model"
    (folder / "transformer").mkdir(parents=True)
    config = json.loads((single_file.bundled_transformer_config(variant) / "transformer" / "config.json")
                        .read_text())
    (folder / "transformer" / "config.json").write_text(json.dumps({**config, **changes}))
    write_header(folder / "transformer" / "diffusion_pytorch_model.safetensors", {"proj_out.weight": [4, 4]})
    if index is not None:
        (folder / "model_index.json").write_text(json.dumps(index))
    return folder


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_diffusers_folder_by_its_pipeline_and_its_transformer_config(variant, tmp_path):
    family = families.FAMILIES[ORIGINAL[variant][0]]
    index = {"_class_name": family.text_to_image, "transformer": ["diffusers", family.denoiser]}
    info = model_files.inspect(_folder(tmp_path, index, variant))
    assert (info.kind, info.family, info.variant, info.layout) == ("diffusers", family.key, variant, "diffusers")
    assert family.text_to_image in info.details
    assert ("does not run it yet" in info.details) == (family.key not in families.SUPPORTED)


def test_a_folder_whose_pipeline_names_no_family_goes_by_its_transformer(tmp_path):
    folder = _folder(tmp_path, {"_class_name": "SomeCustomPipeline"}, "flux2-dev")
    assert (model_files.inspect(folder).family, model_files.inspect(folder).variant) == ("flux2", "flux2-dev")
    shutil.rmtree(folder)
    folder = _folder(tmp_path, {"_class_name": "SomeCustomPipeline"}, "sana-sprint-600m")
    assert (model_files.inspect(folder).family, model_files.inspect(folder).variant) == \
        ("sana-sprint", "sana-sprint-600m")
    shutil.rmtree(folder)
    # a transformer of another size than any published one: the family, no variant
    folder = _folder(tmp_path, {"_class_name": "FluxPipeline"}, "flux-dev", num_layers=2)
    assert (model_files.inspect(folder).family, model_files.inspect(folder).variant) == ("flux", "")


def test_supported_families_and_the_recognised_but_not_run_path():
    assert families.is_supported("sdxl") and families.unsupported_message("sdxl") is None
    for key in ("flux", "sd3", "z-image", "sana", "sana-sprint", "chroma", "qwen-image", "flux2-klein"):
        assert families.is_supported(key) and families.is_supported(key, single_file=True)
        assert families.unsupported_message(key) is None
    assert families.is_supported("pixart-sigma") and not families.is_supported("pixart-sigma", single_file=True)
    for key in ("flux2",):
        assert not families.is_supported(key)
        message = families.unsupported_message(key, "flux1-dev.safetensors")
        assert message.startswith("flux1-dev.safetensors is ") and "recognised" in message
        assert families.FAMILIES[key].name in message
    assert "of no model family this app knows" in families.unsupported_message("unknown")
    families.check_supported("sd1")
    with pytest.raises(ModelError, match=r"FLUX\.2 \[dev\]: recognised, but this version"):
        families.check_supported("flux2", "flux2-dev.safetensors")
    with pytest.raises(ModelError, match=r"Flux\.1 \(recognised\) are not supported"):
        single_file.bundled_config("flux")


def test_bundled_transformer_config_folders():
    for family in families.FAMILIES.values():
        for variant in family.variants:
            folder = single_file.bundled_transformer_config(variant.key)
            config = json.loads((folder / "transformer" / "config.json").read_text())
            assert config["_class_name"] == family.denoiser
    with pytest.raises(ModelError, match="No bundled transformer config for 'flux-depth'"):
        single_file.bundled_transformer_config("flux-depth")

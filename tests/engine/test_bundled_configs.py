"""The bundled single-file configs (resources/configs/<family>/) are complete and self-consistent, and the derived
CLIP tokenizer matches OpenAI's token ids. No weights: full-size models are built on the meta device."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest
from original_layout import text_to_original, unet_to_original, vae_to_original

from desktop_app.models import model_files
from desktop_app.models import single_file

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ("sd1", "sd2", "sd2-v", "sdxl", "sdxl-refiner")
DIFFUSERS_TYPE = {"sd1": "v1", "sd2": "v2", "sd2-v": "v2", "sdxl": "xl_base", "sdxl-refiner": "xl_refiner"}
# (original key, shape) pairs that the published checkpoints hold (v1-5-pruned, v2-1_512/768, sd_xl_base_1.0)
LANDMARKS = {
    "sd1": {"model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": [320, 768],
            "model.diffusion_model.input_blocks.1.1.proj_in.weight": [320, 320, 1, 1],
            "model.diffusion_model.output_blocks.11.0.skip_connection.weight": [320, 640, 1, 1],
            "model.diffusion_model.output_blocks.2.1.conv.weight": [1280, 1280, 3, 3],
            "first_stage_model.decoder.mid.attn_1.q.weight": [512, 512, 1, 1],
            "first_stage_model.decoder.up.1.block.0.nin_shortcut.weight": [256, 512, 1, 1],
            "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": [49408, 768],
            "cond_stage_model.transformer.text_model.encoder.layers.11.mlp.fc2.weight": [768, 3072]},
    "sd2": {"model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight": [320, 1024],
            "model.diffusion_model.input_blocks.1.1.proj_in.weight": [320, 320],
            "cond_stage_model.model.transformer.resblocks.22.attn.in_proj_weight": [3072, 1024],
            "cond_stage_model.model.positional_embedding": [77, 1024],
            "cond_stage_model.model.ln_final.weight": [1024]},
    "sdxl": {"model.diffusion_model.label_emb.0.0.weight": [1280, 2816],
             "model.diffusion_model.input_blocks.7.1.transformer_blocks.9.attn2.to_k.weight": [1280, 2048],
             "model.diffusion_model.output_blocks.2.2.conv.weight": [1280, 1280, 3, 3],
             "conditioner.embedders.0.transformer.text_model.encoder.layers.11.mlp.fc1.weight": [3072, 768],
             "conditioner.embedders.1.model.transformer.resblocks.31.attn.in_proj_weight": [3840, 1280],
             "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": [1280],
             "conditioner.embedders.1.model.text_projection": [1280, 1280]},
    # sd_xl_refiner_1.0.safetensors
    "sdxl-refiner": {"model.diffusion_model.label_emb.0.0.weight": [1536, 2560],
                     "model.diffusion_model.input_blocks.4.1.transformer_blocks.3.attn2.to_k.weight": [768, 1280],
                     "model.diffusion_model.input_blocks.8.1.transformer_blocks.3.attn2.to_v.weight": [1536, 1280],
                     "model.diffusion_model.middle_block.1.transformer_blocks.3.ff.net.2.weight": [1536, 6144],
                     "model.diffusion_model.input_blocks.1.0.in_layers.2.weight": [384, 384, 3, 3],
                     "model.diffusion_model.output_blocks.11.0.skip_connection.weight": [384, 768, 1, 1],
                     "conditioner.embedders.0.model.transformer.resblocks.31.attn.in_proj_weight": [3840, 1280],
                     "conditioner.embedders.0.model.text_projection": [1280, 1280],
                     "first_stage_model.decoder.mid.attn_1.q.weight": [512, 512, 1, 1]},
}
LANDMARKS["sd2-v"] = LANDMARKS["sd2"]


def _meta_components(folder: Path):
    """Each weighted component of the folder, built from its config without weights."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    index = json.loads((folder / "model_index.json").read_text())
    classes = {"UNet2DConditionModel": UNet2DConditionModel, "AutoencoderKL": AutoencoderKL,
               "CLIPTextModel": CLIPTextModel, "CLIPTextModelWithProjection": CLIPTextModelWithProjection}
    built = {}
    with init_empty_weights():
        for name, (library, class_name) in ((k, v) for k, v in index.items() if isinstance(v, list)):
            if class_name not in classes:
                continue
            cls = classes[class_name]
            if library == "diffusers":
                built[name] = cls.from_config(cls.load_config(folder / name))
            else:
                built[name] = cls(CLIPTextConfig.from_pretrained(folder / name, local_files_only=True))
    return index, built


def _original_layout(family: str, parts: dict) -> dict:
    state = unet_to_original(parts["unet"].state_dict(), parts["unet"].config)
    state.update(vae_to_original(parts["vae"].state_dict(), parts["vae"].config))
    text = parts["text_encoder"].state_dict() if "text_encoder" in parts else None
    text_2 = parts["text_encoder_2"].state_dict() if "text_encoder_2" in parts else None
    state.update(text_to_original(family, text, text_2))
    return state


@pytest.mark.parametrize("family", BUNDLED)
def test_bundled_config_is_complete_and_matches_the_original_layout(family):
    from diffusers.loaders.single_file_utils import (
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
        infer_diffusers_model_type,
    )

    folder = single_file.bundled_config(family)
    index, parts = _meta_components(folder)
    for name, value in index.items():
        if isinstance(value, list) and value[0] is not None:  # every component the pipeline loads has its files
            files = {p.name for p in (folder / name).iterdir()}
            assert files & {"config.json", "scheduler_config.json", "vocab.json"}, f"{family}/{name} is empty"
            if name.startswith("tokenizer"):
                assert {"vocab.json", "merges.txt", "tokenizer_config.json"} <= files
    assert {"unet", "vae", "text_encoder_2" if family == "sdxl-refiner" else "text_encoder"} <= set(parts)
    import diffusers

    scheduler_class = getattr(diffusers, index["scheduler"][1])
    scheduler = scheduler_class.from_pretrained(folder, subfolder="scheduler", local_files_only=True)
    assert scheduler.config.num_train_timesteps == 1000 and scheduler.config.beta_schedule == "scaled_linear"

    original = _original_layout(family, parts)
    shapes = {k: list(v.shape) for k, v in original.items()}
    for key, shape in LANDMARKS[family].items():
        assert shapes.get(key) == shape, f"{family}: {key} is {shapes.get(key)}, the real checkpoint has {shape}"
    # diffusers and the app's own inspector both recognise the layout as this family
    assert infer_diffusers_model_type(original) == DIFFUSERS_TYPE[family]
    _, detected, layout, _ = model_files.classify(shapes)
    assert layout == "original"
    assert single_file.choose_config(detected, "epsilon" if family == "sd2" else None) == family
    # and the original layout converts back to exactly the key set and shapes the configs build
    for name, converted in (("unet", convert_ldm_unet_checkpoint(original, parts["unet"].config)),
                            ("vae", convert_ldm_vae_checkpoint(original, parts["vae"].config))):
        expected = {k: list(v.shape) for k, v in parts[name].state_dict().items()}
        assert {k: list(v.shape) for k, v in converted.items()} == expected, name


def test_refiner_unet_config_is_what_diffusers_derives_from_the_sgm_config():
    """resources/configs/sdxl-refiner/unet is diffusers' own conversion of the UNet parameters in Stability
    AI's configs/inference/sd_xl_refiner.yaml (see the README there), and has the refiner's 2.26 B parameters."""
    from accelerate import init_empty_weights
    from diffusers import UNet2DConditionModel
    from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm

    sgm = {"adm_in_channels": 2560, "num_classes": "sequential", "in_channels": 4, "out_channels": 4,
           "model_channels": 384, "attention_resolutions": [4, 2], "num_res_blocks": 2,
           "channel_mult": [1, 2, 4, 4], "num_head_channels": 64, "use_linear_in_transformer": True,
           "transformer_depth": 4, "context_dim": [1280, 1280, 1280, 1280], "legacy": False}
    original = {"model": {"params": {"network_config": {"params": sgm},
                                     "first_stage_config": {"params": {"ddconfig": {"ch_mult": [1, 2, 4, 4]}}}}}}
    refiner_marker = {"conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias": None}  # 1024 px
    derived = create_unet_diffusers_config_from_ldm(original, refiner_marker)
    folder = single_file.bundled_config("sdxl-refiner")
    bundled = json.loads((folder / "unet" / "config.json").read_text())
    assert {key: bundled[key] for key in derived} == derived
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(bundled)
    assert round(sum(p.numel() for p in unet.parameters()) / 1e9, 2) == 2.26
    index = json.loads((folder / "model_index.json").read_text())
    assert index["requires_aesthetics_score"] is True and index["force_zeros_for_empty_prompt"] is False
    assert index["text_encoder"] == [None, None] and index["_class_name"] == "StableDiffusionXLImg2ImgPipeline"
    sdxl = single_file.bundled_config("sdxl")
    for shared in ("vae/config.json", "text_encoder_2/config.json", "scheduler/scheduler_config.json"):
        assert (folder / shared).read_text() == (sdxl / shared).read_text(), shared


def test_sd2_flavours_differ_only_where_published():
    sd2, sd2v = single_file.bundled_config("sd2"), single_file.bundled_config("sd2-v")
    read = lambda folder, name: json.loads((folder / name).read_text())  # noqa: E731
    assert read(sd2, "scheduler/scheduler_config.json")["prediction_type"] == "epsilon"
    assert read(sd2v, "scheduler/scheduler_config.json")["prediction_type"] == "v_prediction"
    assert read(sd2, "unet/config.json")["sample_size"] == 64
    assert read(sd2v, "unet/config.json")["sample_size"] == 96
    assert read(sd2v, "unet/config.json")["upcast_attention"] is True
    assert read(sd2, "text_encoder/config.json") == read(sd2v, "text_encoder/config.json")


@pytest.mark.parametrize(("folder", "pad"), [("sd1/tokenizer", "<|endoftext|>"), ("sd2/tokenizer", "!"),
                                             ("sd2-v/tokenizer", "!"), ("sdxl/tokenizer", "<|endoftext|>"),
                                             ("sdxl/tokenizer_2", "!"), ("sdxl-refiner/tokenizer_2", "!")])
def test_derived_tokenizer_gives_openai_ids(folder, pad):
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(single_file.configs_dir() / folder, local_files_only=True)
    assert len(tokenizer) == 49408
    assert tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert tokenizer("an astronaut riding a horse").input_ids == [49406, 550, 18376, 6765, 320, 4558, 49407]
    # "!</w>" is 256; where "!" is the pad token (SD 2, SDXL tokenizer_2) it is an added token, id 0, as published
    assert tokenizer("Hello, World!").input_ids == [49406, 3306, 267, 1002, 0 if pad == "!" else 256, 49407]
    assert tokenizer.pad_token == pad
    assert tokenizer.model_max_length == 77
    padded = tokenizer("a cat", padding="max_length", max_length=8).input_ids
    assert padded == [49406, 320, 2368, 49407] + [tokenizer.convert_tokens_to_ids(pad)] * 4


def test_derive_script_rebuilds_the_committed_vocabulary(tmp_path):
    spec = importlib.util.spec_from_file_location("derive_clip_tokenizer",
                                                  ROOT / "packaging" / "derive_clip_tokenizer.py")
    derive_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(derive_module)
    tokenizer_dir = single_file.configs_dir() / "sd1" / "tokenizer"
    merges = (tokenizer_dir / "merges.txt").read_text(encoding="utf-8").splitlines()[1:]
    bpe = tmp_path / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe, "wt", encoding="utf-8") as out:  # the source file's shape: a header, then merge lines
        out.write('"bpe_simple_vocab_16e6.txt#version: 0.2\n' + "\n".join(merges + ["extra merge"] * 3) + "\n")
    vocab, derived_merges = derive_module.derive(bpe)
    assert derived_merges == merges
    assert vocab == json.loads((tokenizer_dir / "vocab.json").read_text(encoding="utf-8"))
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407

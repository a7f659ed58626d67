"""The finished LoRA in two formats, both loadable by diffusers' ``pipe.load_lora_weights``:

- ``loras/NAME.safetensors``: kohya format (``lora_unet_..._to_q.lora_down.weight`` and ``.alpha``), the one
  AUTOMATIC1111 and ComfyUI load, with kohya-style ``ss_*`` metadata and ours (``desktop_app_*``);
- ``loras/NAME/pytorch_lora_weights.safetensors``: diffusers format, with ``training.json`` beside it.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"


def peft_state(model) -> dict[str, torch.Tensor]:
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(model)
    return {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state.items()}


def save_lora(folder: Path, name: str, unet, text_encoder, metadata: dict, kohya_text_encoder: bool) -> dict:
    """Write both files; returns their paths. ``metadata``: our keys (strings); ``kohya_text_encoder``: False
    for text encoders other than CLIP (the kohya format names CLIP layers only)."""
    from desktop_app.training.config import check_job_name

    check_job_name(name)  # before any file system call: the name becomes NAME/ and NAME.safetensors in folder
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers, convert_state_dict_to_kohya
    from safetensors.torch import save

    from desktop_app.paths import write_atomically

    unet_peft = peft_state(unet)
    text_peft = peft_state(text_encoder) if text_encoder is not None else {}

    # 1. diffusers format, written into a temporary folder first
    target_dir = folder / name
    temp_dir = folder / f".{name}.tmp"
    temp_dir.mkdir(parents=True, exist_ok=True)
    StableDiffusionPipeline.save_lora_weights(
        save_directory=temp_dir, unet_lora_layers=convert_state_dict_to_diffusers(unet_peft),
        text_encoder_lora_layers=convert_state_dict_to_diffusers(text_peft) if text_peft else None,
        safe_serialization=True)
    (temp_dir / "training.json").write_text(json.dumps(metadata, indent=1) + "\n", encoding="utf-8")
    if target_dir.exists():
        shutil.rmtree(target_dir)
    os.replace(temp_dir, target_dir)

    # 2. kohya format: alpha = rank (our LoraConfig uses lora_alpha = r, which convert_state_dict_to_kohya assumes)
    combined = {f"unet.{k}": v for k, v in unet_peft.items()}
    if kohya_text_encoder:
        combined.update({f"text_encoder.{k}": v for k, v in text_peft.items()})
    # alphas as float32 scalars (kohya's own files store them as floats; the converter makes int64)
    kohya = {k: (v.float() if k.endswith(".alpha") else v).contiguous()
             for k, v in convert_state_dict_to_kohya(combined).items()}
    kohya_file = folder / f"{name}.safetensors"
    data = save(kohya, metadata={k: str(v) for k, v in metadata.items()})
    write_atomically(kohya_file, lambda stream: stream.write(data), prefix=f".{name}.safetensors-")
    return {"kohya": str(kohya_file), "diffusers": str(target_dir / DIFFUSERS_FILE)}


def metadata(config, base_name: str, base_hash: str | None, dataset_hash: str, images: int, steps: int,
             date: str, text_encoder_in_kohya: bool) -> dict:
    """kohya-style ``ss_*`` keys (what A1111 and ComfyUI show) and ours."""
    return {
        "ss_network_module": "networks.lora", "ss_network_dim": str(config.rank),
        "ss_network_alpha": str(config.rank), "ss_learning_rate": str(config.learning_rate),
        "ss_max_train_steps": str(steps), "ss_steps": str(steps), "ss_resolution": f"({config.resolution}, "
        f"{config.resolution})", "ss_train_batch_size": str(config.batch_size), "ss_seed": str(config.seed),
        "ss_num_train_images": str(images), "ss_sd_model_name": base_name, "ss_sd_model_hash": base_hash or "",
        "ss_training_finished_at": date, "ss_output_name": config.name,
        "ss_network_train_unet_only": str(not (config.train_text_encoder and text_encoder_in_kohya)),
        "ss_tag_frequency": json.dumps({"instance": {config.token: images}}),
        "desktop_app_base_model": base_name, "desktop_app_base_model_hash": base_hash or "",
        "desktop_app_trigger": config.token, "desktop_app_class_word": config.class_word,
        "desktop_app_steps": str(steps), "desktop_app_rank": str(config.rank),
        "desktop_app_dataset_hash": dataset_hash, "desktop_app_date": date,
        "desktop_app_text_encoder": str(bool(config.train_text_encoder)),
    }

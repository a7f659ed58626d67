"""Tiny random LoRAs for a tiny model, written the way the LoRA trainer and other tools write them:
diffusers format (``save_lora_weights``: ``unet.<module>.lora_A.weight``) and kohya format
(``lora_unet_<module>.lora_down.weight`` + ``.alpha``), plus hand-made files for the error paths.
"""

from __future__ import annotations

from pathlib import Path

import torch


def lora_state(unet_dir: Path, rank: int = 2, seed: int = 0, scale: float = 0.5) -> dict[str, torch.Tensor]:
    """A peft LoRA state dict (random A and B, so the LoRA changes the output) for the UNet in ``unet_dir``."""
    from diffusers import UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    unet = UNet2DConditionModel.from_pretrained(unet_dir)
    torch.manual_seed(seed)
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, init_lora_weights=False,
                                target_modules=["to_k", "to_q", "to_v", "to_out.0"]))
    state = get_peft_model_state_dict(unet)
    return {k: (v.detach().float() * scale).contiguous() for k, v in state.items()}


def save_diffusers_lora(state: dict, folder: Path) -> Path:
    from diffusers import StableDiffusionPipeline
    from diffusers.utils import convert_state_dict_to_diffusers

    StableDiffusionPipeline.save_lora_weights(save_directory=folder,
                                              unet_lora_layers=convert_state_dict_to_diffusers(state),
                                              safe_serialization=True)
    return folder / "pytorch_lora_weights.safetensors"


def save_kohya_lora(state: dict, path: Path, metadata: dict | None = None) -> Path:
    from diffusers.utils import convert_state_dict_to_kohya
    from safetensors.torch import save_file

    kohya = convert_state_dict_to_kohya({f"unet.{k}": v for k, v in state.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in kohya.items()}, path, metadata=metadata)
    return path


def save_sdxl_shaped_lora(path: Path) -> Path:
    """A kohya key of an SDXL LoRA: attn2.to_k takes 2048-wide text features."""
    from safetensors.torch import save_file

    base = "lora_unet_input_blocks_4_1_transformer_blocks_0_attn2_to_k"
    save_file({f"{base}.lora_down.weight": torch.zeros(4, 2048), f"{base}.lora_up.weight": torch.zeros(640, 4),
               f"{base}.alpha": torch.tensor(4.0)}, path)
    return path


def save_unmatched_lora(path: Path, width: int) -> Path:
    """LoRA keys of the right width for layers the model does not have."""
    from safetensors.torch import save_file

    base = "lora_unet_down_blocks_7_attentions_3_transformer_blocks_0_attn2_to_k"
    save_file({f"{base}.lora_down.weight": torch.zeros(2, width), f"{base}.lora_up.weight": torch.zeros(8, 2),
               f"{base}.alpha": torch.tensor(2.0)}, path)
    return path

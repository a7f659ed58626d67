"""Diffusers state dicts back to the original single-file (LDM / SGM) key layout: the reverse of diffusers'
``convert_ldm_unet_checkpoint``, ``convert_ldm_vae_checkpoint``, ``convert_ldm_clip_checkpoint`` and
``convert_open_clip_checkpoint`` (diffusers/loaders/single_file_utils.py ships only the forward direction).

Tests use it to write tiny single-file checkpoints from tiny diffusers models, and to lay out the bundled
full-size configs (on the meta device) as an original checkpoint would hold them.
"""

from __future__ import annotations

import torch

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
SD1_TEXT_PREFIX = "cond_stage_model.transformer."
SD2_TEXT_PREFIX = "cond_stage_model.model."
XL_TEXT_PREFIX = "conditioner.embedders.0.transformer."
XL_TEXT2_PREFIX = "conditioner.embedders.1.model."
XL_REFINER_TEXT_PREFIX = "conditioner.embedders.0.model."  # the refiner has OpenCLIP bigG alone, first

_UNET_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"), ("conv_shortcut", "skip_connection"))
_UNET_TOP = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
             "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
             "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2"}


def _rename_resnet(rest: str) -> str:
    for new, old in _UNET_RESNET:
        if rest.startswith(new + "."):
            return old + rest[len(new):]
    raise KeyError(rest)


def unet_to_original(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """A UNet2DConditionModel state dict in the ``model.diffusion_model.`` layout (openaimodel.UNetModel)."""
    per_block = config["layers_per_block"]
    blocks = len(config["block_out_channels"])
    up_has_attn = ["CrossAttn" in t for t in config["up_block_types"]]
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        name = None
        for diffusers_name, ldm_name in _UNET_TOP.items():
            if key.startswith(diffusers_name + "."):
                name = ldm_name + key[len(diffusers_name):]
        if name is not None:
            pass
        elif parts[0] == "down_blocks":
            b, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "downsamplers":  # down_blocks.b.downsamplers.0.conv.weight -> input_blocks.i.0.op.weight
                name = f"input_blocks.{1 + b * (per_block + 1) + per_block}.0.op.{parts[-1]}"
            else:
                i = 1 + b * (per_block + 1) + j
                name = (f"input_blocks.{i}.0.{_rename_resnet(rest)}" if kind == "resnets"
                        else f"input_blocks.{i}.1.{rest}")
        elif parts[0] == "mid_block":
            kind, j, rest = parts[1], int(parts[2]), ".".join(parts[3:])
            name = (f"middle_block.{2 * j}.{_rename_resnet(rest)}" if kind == "resnets"
                    else f"middle_block.1.{rest}")
        elif parts[0] == "up_blocks":
            b, kind, j, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
            if kind == "upsamplers":  # the block's last layer, after its resnet (and attention)
                i = b * (per_block + 1) + per_block
                name = f"output_blocks.{i}.{2 if up_has_attn[b] else 1}.conv.{parts[-1]}"
            else:
                i = b * (per_block + 1) + j
                name = (f"output_blocks.{i}.0.{_rename_resnet(rest)}" if kind == "resnets"
                        else f"output_blocks.{i}.1.{rest}")
        else:
            raise KeyError(f"no original-layout name for UNet key {key}")
        out[UNET_PREFIX + name] = value
    assert blocks == len(config["up_block_types"])
    return out


_VAE_TOP = {"conv_norm_out": "norm_out"}
_VAE_ATTN = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}


def vae_to_original(state: dict[str, torch.Tensor], config) -> dict[str, torch.Tensor]:
    """An AutoencoderKL state dict in the ``first_stage_model.`` layout (ldm Encoder/Decoder)."""
    ups = len(config["up_block_types"])
    out = {}
    for key, value in state.items():
        parts = key.split(".")
        side = parts[0]  # encoder, decoder, quant_conv, post_quant_conv
        name = key
        if side in ("encoder", "decoder"):
            rest = ".".join(parts[1:])
            if parts[1] in ("down_blocks", "up_blocks"):
                i, kind = int(parts[2]), parts[3]
                ldm_block = i if parts[1] == "down_blocks" else ups - 1 - i
                where = "down" if parts[1] == "down_blocks" else "up"
                tail = ".".join(parts[5:])
                if kind == "resnets":
                    tail = tail.replace("conv_shortcut", "nin_shortcut")
                    name = f"{side}.{where}.{ldm_block}.block.{parts[4]}.{tail}"
                else:  # downsamplers.0.conv.* / upsamplers.0.conv.*
                    name = f"{side}.{where}.{ldm_block}.{'downsample' if where == 'down' else 'upsample'}.{tail}"
            elif parts[1] == "mid_block":
                kind, j, tail = parts[2], int(parts[3]), ".".join(parts[4:])
                if kind == "resnets":
                    name = f"{side}.mid.block_{j + 1}.{tail.replace('conv_shortcut', 'nin_shortcut')}"
                else:
                    for new, old in _VAE_ATTN.items():
                        if tail.startswith(new + "."):
                            tail = old + tail[len(new):]
                            break
                    name = f"{side}.mid.attn_1.{tail}"
                    if tail.endswith("weight") and not tail.startswith("norm") and value.ndim == 2:
                        value = value[:, :, None, None]  # the original attention uses 1x1 convolutions
            else:
                for new, old in _VAE_TOP.items():
                    rest = rest.replace(new, old)
                name = f"{side}.{rest}"
        out[VAE_PREFIX + name] = value
    return out


def _with_text_model(key: str) -> str:
    return key if key.startswith(("text_model.", "text_projection")) else "text_model." + key


def clip_to_original(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """An OpenAI CLIP-L text encoder (transformers CLIPTextModel): transformers' names under ``prefix``."""
    return {prefix + _with_text_model(k): v for k, v in state.items() if not k.endswith("position_ids")}


_OPEN_CLIP_LAYER = (("layer_norm1", "ln_1"), ("layer_norm2", "ln_2"), ("mlp.fc1", "mlp.c_fc"),
                    ("mlp.fc2", "mlp.c_proj"), ("self_attn.out_proj", "attn.out_proj"))


def open_clip_to_original(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """An OpenCLIP text tower (SD 2's ViT-H, SDXL's bigG) in open_clip's names: fused q/k/v ``in_proj``,
    ``resblocks``, ``positional_embedding``, and ``text_projection`` as (width, projection)."""
    state = {_with_text_model(k): v for k, v in state.items() if not k.endswith("position_ids")}
    out = {}
    fused: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in state.items():
        if key == "text_model.embeddings.token_embedding.weight":
            out["token_embedding.weight"] = value
        elif key == "text_model.embeddings.position_embedding.weight":
            out["positional_embedding"] = value
        elif key.startswith("text_model.final_layer_norm."):
            out["ln_final." + key.rsplit(".", 1)[1]] = value
        elif key == "text_projection.weight":
            out["text_projection"] = value.T.contiguous()
        elif key.startswith("text_model.encoder.layers."):
            layer, rest = key[len("text_model.encoder.layers."):].split(".", 1)
            base = f"transformer.resblocks.{layer}."
            if rest.startswith("self_attn.") and rest.split(".")[1] in ("q_proj", "k_proj", "v_proj"):
                which, kind = rest.split(".")[1][0], rest.split(".")[2]
                fused.setdefault(base + f"attn.in_proj_{kind}", {})[which] = value
                continue
            for new, old in _OPEN_CLIP_LAYER:
                if rest.startswith(new + "."):
                    rest = old + rest[len(new):]
                    break
            out[base + rest] = value
        else:
            raise KeyError(f"no original-layout name for text encoder key {key}")
    for name, qkv in fused.items():
        out[name] = torch.cat([qkv["q"], qkv["k"], qkv["v"]], dim=0)
    return {prefix + k: v for k, v in out.items()}


def pipeline_to_original(pipe, family: str) -> dict[str, torch.Tensor]:
    """A whole SD 1.x / 2.x / XL pipeline or an SDXL refiner (family "sd1", "sd2", "sdxl", "sdxl-refiner") as
    one original-layout state dict."""
    state = unet_to_original(pipe.unet.state_dict(), pipe.unet.config)
    state.update(vae_to_original(pipe.vae.state_dict(), pipe.vae.config))
    text = pipe.text_encoder.state_dict() if getattr(pipe, "text_encoder", None) is not None else None
    text_2 = pipe.text_encoder_2.state_dict() if family.startswith("sdxl") else None
    state.update(text_to_original(family, text, text_2))
    return state


def text_to_original(family: str, text: dict | None, text_2: dict | None = None) -> dict[str, torch.Tensor]:
    if family == "sdxl-refiner":
        return open_clip_to_original(text_2, XL_REFINER_TEXT_PREFIX)
    if family == "sdxl":
        return {**clip_to_original(text, XL_TEXT_PREFIX), **open_clip_to_original(text_2, XL_TEXT2_PREFIX)}
    if family.startswith("sd2"):
        return open_clip_to_original(text, SD2_TEXT_PREFIX)
    return clip_to_original(text, SD1_TEXT_PREFIX)

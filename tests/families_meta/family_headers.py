"""Safetensors files that are all header: the real tensor names and full-size shapes of each family's published
transformer files, with the data left as a hole (a sparse file), so that a 24 GB Flux header costs nothing.

The names and shapes of the makers' own layouts (``ORIGINAL``) are those diffusers' single-file loader reads
(``diffusers.loaders.single_file_utils``: ``CHECKPOINT_KEY_NAMES`` and its ``convert_*_to_diffusers`` key maps)
and its conversion scripts (``scripts/convert_sana_to_diffusers.py``, ``convert_pixart_sigma_to_diffusers.py``);
the widths are those of the published configs in resources/configs/. A few names per model suffice: a file of
each is recognised from them, as diffusers itself recognises it.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

DTYPE_BYTES = {"BF16": 2, "F16": 2, "F32": 4, "F8_E4M3": 1}


def write_header(path: Path, shapes: dict[str, list[int]], dtype: str = "BF16") -> Path:
    """A valid safetensors file with these tensors: the header written, the data a hole of the right size."""
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = DTYPE_BYTES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        out.write(struct.pack("<Q", len(raw)) + raw)
        out.truncate(8 + len(raw) + offset)  # a sparse hole: no data is written
    return path


def prefixed(shapes: dict[str, list[int]], prefix: str = "model.diffusion_model.") -> dict[str, list[int]]:
    return {prefix + name: shape for name, shape in shapes.items()}


def _flux1(width: int = 3072, guidance: bool = True) -> dict[str, list[int]]:
    # BFL's flux1-dev / flux1-schnell.safetensors (19 double, 38 single blocks)
    shapes = {"img_in.weight": [width, 64], "img_in.bias": [width], "time_in.in_layer.weight": [width, 256],
              "vector_in.in_layer.weight": [width, 768], "txt_in.weight": [width, 4096],
              "double_blocks.0.img_attn.qkv.weight": [3 * width, width],
              "double_blocks.0.img_attn.norm.key_norm.scale": [128],
              "double_blocks.18.txt_mlp.2.weight": [width, 4 * width],
              "single_blocks.0.linear1.weight": [7 * width, width],
              "single_blocks.37.linear2.weight": [width, 5 * width], "final_layer.linear.weight": [64, width]}
    if guidance:
        shapes.update({"guidance_in.in_layer.weight": [width, 256], "guidance_in.in_layer.bias": [width]})
    return shapes


def _flux2(width: int, joint: int, double: int, single: int) -> dict[str, list[int]]:
    # BFL's FLUX.2 files: shared modulations, no biases, fused single-block projections (mlp ratio 3)
    mlp = 3 * width
    return {"img_in.weight": [width, 128], "txt_in.weight": [width, joint],
            "time_in.in_layer.weight": [width, 256],
            "double_stream_modulation_img.lin.weight": [6 * width, width],
            "single_stream_modulation.lin.weight": [3 * width, width],
            "double_blocks.0.img_attn.qkv.weight": [3 * width, width],
            "double_blocks.0.img_attn.norm.key_norm.scale": [128],
            f"double_blocks.{double - 1}.img_mlp.0.weight": [2 * mlp, width],
            f"single_blocks.{single - 1}.linear1.weight": [3 * width + 2 * mlp, width],
            f"single_blocks.{single - 1}.linear2.weight": [width, width + mlp],
            "final_layer.linear.weight": [128, width]}


def _sd3(width: int, tokens: int, blocks: int, qk_norm: bool, attn2: bool) -> dict[str, list[int]]:
    # Stability AI's sd3_medium / sd3.5_medium / sd3.5_large.safetensors (MMDiT, 64-wide heads)
    shapes = {"pos_embed": [1, tokens, width], "x_embedder.proj.weight": [width, 16, 2, 2],
              "x_embedder.proj.bias": [width], "context_embedder.weight": [width, 4096],
              "joint_blocks.0.context_block.adaLN_modulation.1.bias": [6 * width],
              "joint_blocks.0.x_block.attn.qkv.weight": [3 * width, width],
              f"joint_blocks.{blocks - 1}.x_block.mlp.fc1.weight": [4 * width, width],
              "final_layer.linear.weight": [64, width]}
    if qk_norm:
        shapes["joint_blocks.0.x_block.attn.ln_q.weight"] = [64]
    if attn2:
        shapes["joint_blocks.0.x_block.attn2.qkv.weight"] = [3 * width, width]
    return shapes


def _sana(width: int, blocks: int, sprint: bool = False) -> dict[str, list[int]]:
    # the Sana checkpoints (blocks of linear attention, GLUMBConv feed-forward, Gemma-2 captions)
    shapes = {"x_embedder.proj.weight": [width, 32, 1, 1], "x_embedder.proj.bias": [width],
              "t_embedder.mlp.0.weight": [width, 256], "t_block.1.weight": [6 * width, width],
              "y_embedder.y_proj.fc1.weight": [width, 2304], "attention_y_norm.weight": [width],
              "blocks.0.attn.qkv.weight": [3 * width, width],
              "blocks.0.cross_attn.q_linear.weight": [width, width],
              "blocks.0.cross_attn.kv_linear.weight": [2 * width, width],
              "blocks.0.mlp.inverted_conv.conv.weight": [5 * width, width, 1, 1],
              f"blocks.{blocks - 1}.cross_attn.q_linear.weight": [width, width],
              "final_layer.linear.weight": [32, width]}
    if sprint:
        shapes.update({"cfg_embedder.mlp.0.weight": [width, 256], "blocks.0.attn.q_norm.weight": [width]})
    return shapes


# variant key -> (family, the tensors of its published file in its makers' layout)
ORIGINAL = {
    "flux-dev": ("flux", _flux1()),
    "flux-schnell": ("flux", _flux1(guidance=False)),
    "chroma": ("chroma", {  # lodestones' Chroma1-HD.safetensors: Flux.1 without time/vector/guidance inputs
        "distilled_guidance_layer.in_proj.weight": [5120, 64], "distilled_guidance_layer.in_proj.bias": [5120],
        "distilled_guidance_layer.out_proj.weight": [3072, 5120], "img_in.weight": [3072, 64],
        "img_in.bias": [3072], "txt_in.weight": [3072, 4096], "double_blocks.0.img_attn.qkv.weight": [9216, 3072],
        "double_blocks.0.img_attn.norm.key_norm.scale": [128], "single_blocks.37.linear1.weight": [21504, 3072],
        "final_layer.linear.weight": [64, 3072]}),
    "flux2-klein-4b": ("flux2-klein", _flux2(3072, 7680, 5, 20)),
    "flux2-klein-9b": ("flux2-klein", _flux2(4096, 12288, 8, 24)),
    "flux2-dev": ("flux2", {**_flux2(6144, 15360, 8, 48), "guidance_in.in_layer.weight": [6144, 256]}),
    "sd3-medium": ("sd3", _sd3(1536, 36864, 24, qk_norm=False, attn2=False)),
    "sd3.5-medium": ("sd3", _sd3(1536, 147456, 24, qk_norm=True, attn2=True)),
    "sd3.5-large": ("sd3", _sd3(2432, 36864, 38, qk_norm=True, attn2=False)),
    "z-image-turbo": ("z-image", {  # Comfy-Org's z_image_turbo_bf16.safetensors (fused qkv)
        "x_embedder.weight": [3840, 64], "x_embedder.bias": [3840], "cap_embedder.0.weight": [2560],
        "cap_embedder.1.weight": [3840, 2560], "cap_embedder.1.bias": [3840],
        "layers.0.adaLN_modulation.0.weight": [15360, 256], "layers.0.attention.qkv.weight": [11520, 3840],
        "layers.29.feed_forward.w1.weight": [10240, 3840], "noise_refiner.0.attention.qkv.weight": [11520, 3840],
        "final_layer.linear.weight": [64, 3840]}),
    "qwen-image": ("qwen-image", {  # Qwen-Image's own layout is diffusers' (ComfyUI's files keep it)
        "img_in.weight": [3072, 64], "img_in.bias": [3072], "txt_norm.weight": [3584],
        "txt_in.weight": [3072, 3584], "transformer_blocks.0.img_mod.1.weight": [18432, 3072],
        "transformer_blocks.59.attn.to_q.weight": [3072, 3072], "proj_out.weight": [64, 3072]}),
    "sana-1600m": ("sana", _sana(2240, 20)),
    "sana-600m": ("sana", _sana(1152, 28)),
    "sana-sprint-1600m": ("sana-sprint", _sana(2240, 20, sprint=True)),
    "sana-sprint-600m": ("sana-sprint", _sana(1152, 28, sprint=True)),
    "pixart-sigma-xl": ("pixart-sigma", {  # PixArt-Sigma-XL-2-1024-MS (the same blocks as Sana, a GELU MLP)
        "x_embedder.proj.weight": [1152, 4, 2, 2], "x_embedder.proj.bias": [1152],
        "t_embedder.mlp.0.weight": [1152, 256], "t_block.1.weight": [6912, 1152],
        "y_embedder.y_proj.fc1.weight": [1152, 4096], "blocks.0.attn.qkv.weight": [3456, 1152],
        "blocks.0.cross_attn.q_linear.weight": [1152, 1152], "blocks.0.cross_attn.kv_linear.weight": [2304, 1152],
        "blocks.0.mlp.fc1.weight": [4608, 1152], "blocks.27.mlp.fc2.weight": [1152, 4608],
        "final_layer.linear.weight": [32, 1152]}),
}

# what diffusers' own ``infer_diffusers_model_type`` calls the same tensors (None: it has no name for them)
DIFFUSERS_TYPE = {"flux-dev": "flux-dev", "flux-schnell": "flux-schnell", "chroma": "chroma",
                  "flux2-klein-4b": "flux-2-dev", "flux2-klein-9b": "flux-2-dev", "flux2-dev": "flux-2-dev",
                  "sd3-medium": "sd3", "sd3.5-medium": "sd35_medium", "sd3.5-large": "sd35_large",
                  "z-image-turbo": "z-image-turbo", "sana-1600m": "sana", "sana-600m": "sana",
                  "sana-sprint-1600m": "sana", "sana-sprint-600m": "sana", "qwen-image": None,
                  "pixart-sigma-xl": None}

"""Files for the model-library tests: tiny safetensors files with the key names and deciding shapes of each
family, and hostile or broken files (pickles, zips, truncated headers, LFS pointers)."""

from __future__ import annotations

import json
import pickle
import struct
import zipfile
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

UNET = "model.diffusion_model."
ATTN2_K = UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"


def write_safetensors(path: Path, shapes: dict[str, tuple[int, ...]], metadata: dict | None = None) -> Path:
    """Zero float16 tensors of these shapes, written by the safetensors library itself."""
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({name: np.zeros(shape, dtype=np.float16) for name, shape in shapes.items()}, str(path),
              metadata=metadata)
    return path


# original (single-file) layouts: the keys diffusers' single_file_utils looks for, with the deciding shapes
FAMILY_SHAPES = {
    "sd1": {ATTN2_K: (8, 768), UNET + "out.2.weight": (4, 8, 3, 3),
            "cond_stage_model.transformer.text_model.embeddings.position_embedding.weight": (77, 8),
            "first_stage_model.decoder.conv_out.weight": (3, 8, 3, 3)},
    "sd2": {ATTN2_K: (8, 1024), UNET + "out.2.weight": (4, 8, 3, 3),
            "cond_stage_model.model.token_embedding.weight": (16, 8)},
    "sd2-v": {ATTN2_K: (8, 1024), "cond_stage_model.model.token_embedding.weight": (16, 8), "v_pred": ()},
    "sdxl": {ATTN2_K: (8, 2048),
             "conditioner.embedders.0.transformer.text_model.embeddings.position_embedding.weight": (77, 8),
             "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias": (8,)},
    "sdxl-refiner": {ATTN2_K: (8, 1280), "conditioner.embedders.0.model.text_projection": (8, 8)},
    "sd3": {"model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias": (8,),
            "text_encoders.clip_l.transformer.text_model.embeddings.position_embedding.weight": (77, 8)},
    "flux": {"double_blocks.0.img_attn.norm.key_norm.scale": (8,), "single_blocks.0.linear1.weight": (8, 8)},
}

KOHYA_LORA = {  # SD1.x kohya LoRA: down [rank, in], up [out, rank], alpha scalar
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 768),
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": (320, 4),
    "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.alpha": (),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight": (4, 768),
    "lora_te_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight": (768, 4),
}
DIFFUSERS_LORA_SDXL = {  # diffusers/PEFT LoRA for SDXL: cross-attention reads the 2048-wide text embedding
    "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_A.weight": (8, 2048),
    "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k.lora_B.weight": (640, 8),
    "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight": (8, 640),
    "unet.down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.weight": (640, 8),
}
EMBEDDING_SD1 = {"emb_params": (3, 768)}
EMBEDDING_SDXL = {"clip_l": (2, 768), "clip_g": (2, 1280)}
ESRGAN = {"conv_first.weight": (8, 3, 3, 3), "body.0.rdb1.conv1.weight": (8, 8, 3, 3),
          "conv_last.weight": (3, 8, 3, 3)}


# ---------------------------------------------------------------------------------------------------------------
# hostile and broken files: (file name, how to write it, the words its refusal must contain)


def pickle_file(path: Path) -> Path:
    path.write_bytes(pickle.dumps({"state_dict": {"a": [1.0, 2.0]}}, protocol=4))
    return path


def zip_file(path: Path) -> Path:
    with zipfile.ZipFile(path, "w") as archive:  # the layout torch.save writes
        archive.writestr("archive/data.pkl", pickle.dumps({"a": 1}, protocol=2))
        archive.writestr("archive/version", "3\n")
    return path


def truncated_file(path: Path) -> Path:
    """A real safetensors file cut short: the header describes more tensor bytes than remain."""
    write_safetensors(path, FAMILY_SHAPES["sd1"])
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    return path


def claims_more_file(path: Path, described: int = 2_132_000_000, present: int = 1000) -> Path:
    """A hand-written header whose one tensor ends at ``described`` bytes; only ``present`` follow."""
    count = described // 2
    header = json.dumps({"w": {"dtype": "F16", "shape": [count], "data_offsets": [0, described]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * present)
    return path


def header_too_large_file(path: Path) -> Path:
    path.write_bytes(struct.pack("<Q", 10_000_000) + b'{"w": {"dtype": "F16"' + b" " * 100)
    return path


def lfs_pointer_file(path: Path, real_size: int = 2_132_625_894) -> Path:
    path.write_text("version https://git-lfs.github.com/spec/v1\n"
                    "oid sha256:6ce0161689b3853acaa03779ec93eafe75a02f4ced659bee03f50797806fa2fa\n"
                    f"size {real_size}\n")
    return path


def not_json_file(path: Path) -> Path:
    junk = b"\x01\x02this is not json\xff" * 4
    path.write_bytes(struct.pack("<Q", len(junk)) + junk + b"\0" * 64)
    return path


HOSTILE = {
    "pickle-renamed": ("model.safetensors", pickle_file,
                       ["not a safetensors file", "Python pickle", "can run code"]),
    "zip-renamed": ("model.safetensors", zip_file,
                    ["not a safetensors file", "PyTorch zip archive", "can run code"]),
    "truncated": ("model.safetensors", truncated_file, ["truncated", "bytes of tensors", "the file has"]),
    "claims-more": ("model.safetensors", claims_more_file,
                    ["truncated", "the header describes 2,132,000,000 bytes of tensors, the file has 1,000"]),
    "header-too-large": ("model.safetensors", header_too_large_file,
                         ["header claims 10,000,000 bytes", "the whole file has only"]),
    "lfs-pointer": ("model.safetensors", lfs_pointer_file,
                    ["Git-LFS pointer of", "not the model", "2,132,625,894", "git lfs pull"]),
    "empty": ("model.safetensors", lambda p: (p.write_bytes(b""), p)[1], ["empty file", "0 bytes"]),
    "not-json": ("model.safetensors", not_json_file, ["header", "is not JSON"]),
    "ckpt": ("model.ckpt", zip_file, ["PyTorch checkpoint", "can run code", "convert it to .safetensors",
                                      "weights_only=True"]),
    "pickle-pt": ("model.pt", pickle_file, ["PyTorch checkpoint", "convert it to .safetensors"]),
}


def make_hostile(kind: str, folder: Path) -> tuple[Path, list[str]]:
    name, write, words = HOSTILE[kind]
    folder.mkdir(parents=True, exist_ok=True)
    return write(folder / name), words

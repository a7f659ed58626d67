"""What a model file or folder holds, read without torch: safety checks, kind, family and layout.

The content decides, never the name. A ``.safetensors`` file is checked by reading its header by hand (8-byte
little-endian length, a JSON header, data offsets) against the file size, without loading any tensor. Pickles
and zip archives (PyTorch checkpoints) are refused whatever they are called, because unpickling can run code.
The family comes from tensor key names and shapes: the key names are those diffusers' ``single_file_utils``
(``CHECKPOINT_KEY_NAMES``) uses to tell checkpoints apart.

This module imports only the standard library and the app's torch-free modules: the window uses it.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from .engine import model_folder
from .engine.errors import ModelError

# kinds
CHECKPOINT, DIFFUSERS, LORA, EMBEDDING, UPSCALER, UNKNOWN = (
    "checkpoint", "diffusers", "lora", "embedding", "upscaler", "unknown")
KINDS = (CHECKPOINT, DIFFUSERS, LORA, EMBEDDING, UPSCALER, UNKNOWN)

FAMILY_NAMES = {
    "sd1": "Stable Diffusion 1.x", "sd2": "Stable Diffusion 2.x",
    "sd2-v": "Stable Diffusion 2.x (768 v-prediction)",
    "sdxl": "SDXL", "sdxl-refiner": "SDXL refiner", "sd3": "Stable Diffusion 3", "flux": "Flux",
    "embedded": "the embedded model", "unknown": "an unknown family",
}
# the text-encoder width a UNet cross-attends to, per family (the embedded model's MiniLM gives 384)
CONTEXT_FAMILIES = {384: "embedded", 768: "sd1", 1024: "sd2", 1280: "sdxl-refiner", 2048: "sdxl"}

PICKLED_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
MAX_HEADER = 100_000_000  # the safetensors library's own limit on the JSON header
LFS_MAGIC = b"version https://git-lfs.github.com/spec/"
DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2, "U16": 2,
               "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}

# from diffusers.loaders.single_file_utils.CHECKPOINT_KEY_NAMES (original single-file layouts)
KEY_XL_BASE = "conditioner.embedders.1."
KEY_XL_REFINER = "conditioner.embedders.0."
KEY_CLIP_SD1 = "cond_stage_model.transformer."
KEY_OPEN_CLIP_SD2 = "cond_stage_model.model."
KEYS_SD3 = ("joint_blocks.0.context_block.adaLN_modulation.1.bias",
            "model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias")
KEYS_FLUX = ("double_blocks.0.img_attn.norm.key_norm.scale",
             "model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale")
KEY_V_PRED = "v_pred"  # the marker A1111 and ComfyUI write into v-prediction SD2 checkpoints
UNET_PREFIX = "model.diffusion_model."

CONVERT_HINT = ("convert it to .safetensors, for example with the Hugging Face \"safetensors/convert\" Space, or "
                "in Python with torch.load(path, map_location=\"cpu\", weights_only=True) (which refuses code) "
                "followed by safetensors.torch.save_file")

_CROSS_ATTN_K = re.compile(r"attn2[._]to_k")
_LORA_DOWN = re.compile(r"(\.lora_down\.weight|\.lora_A\.weight|\.lora\.down\.weight|\.lora_A\.default\.weight)$")


@dataclass(frozen=True)
class FileInfo:
    path: Path
    kind: str  # one of KINDS
    family: str  # "sd1", "sd2", "sd2-v", "sdxl", "sdxl-refiner", "sd3", "flux", "embedded", "unknown"
    layout: str  # "original", "diffusers", "kohya", "peft", "textual-inversion", "pytorch", ...
    size_bytes: int
    tensor_count: int
    details: str  # a short sentence for the window

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES.get(self.family, self.family)


# ---------------------------------------------------------------------------------------------------------------
# 1. the safetensors header, checked by hand


def read_header(path: Path) -> dict:
    """The safetensors header of ``path`` (tensor name -> {"dtype", "shape", "data_offsets"}; "__metadata__"
    removed), checked against the file size. Raises ModelError naming what is wrong."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as handle:
            start = handle.read(128)
            _refuse_foreign(path, start, size)
            head = start[:8]
            if size < 8:
                raise ModelError(f"{path.name} is not a safetensors file: it has only {size} bytes, fewer than "
                                 "the 8-byte header length a safetensors file starts with.")
            (header_len,) = struct.unpack("<Q", head)
            if header_len > size - 8:
                raise ModelError(f"{path.name} is damaged or truncated: its header claims {header_len:,} bytes "
                                 f"but the whole file has only {size:,}.")
            if header_len > MAX_HEADER:
                raise ModelError(f"{path.name} is not a usable safetensors file: its header is {header_len:,} "
                                 f"bytes, more than the {MAX_HEADER:,} the format allows.")
            handle.seek(8)
            raw = handle.read(header_len)
    except OSError as exc:
        raise ModelError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ModelError(f"{path.name} is damaged or not a safetensors file: its {header_len:,}-byte header "
                         "is not JSON.") from None
    if not isinstance(header, dict):
        raise ModelError(f"{path.name} is damaged: its safetensors header is not a JSON object.")
    header.pop("__metadata__", None)
    data_size = size - 8 - header_len
    needed = 0
    for name, entry in header.items():
        needed = max(needed, _check_entry(path, name, entry))
    if needed > data_size:
        raise ModelError(f"{path.name} is truncated: the header describes {needed:,} bytes of tensors, the file "
                         f"has {data_size:,}. Download or copy it again.")
    return header


def _check_entry(path: Path, name: str, entry) -> int:
    """The end offset of one tensor, or a ModelError for a malformed entry."""
    try:
        dtype, shape, (begin, end) = entry["dtype"], list(entry["shape"]), entry["data_offsets"]
        if not all(isinstance(v, int) and v >= 0 for v in [begin, end, *shape]) or end < begin:
            raise ValueError
    except (KeyError, TypeError, ValueError):
        raise ModelError(f"{path.name} is damaged: the header entry for tensor {name!r} is malformed.") from None
    width = DTYPE_BYTES.get(str(dtype))
    if width is not None and math.prod(shape) * width != end - begin:
        raise ModelError(f"{path.name} is damaged: tensor {name!r} ({dtype} {shape}) needs "
                         f"{math.prod(shape) * width:,} bytes but the header gives it {end - begin:,}.")
    return end


def _refuse_foreign(path: Path, head: bytes, size: int) -> None:
    """ModelError for an empty file, a Git-LFS pointer, a pickle or a zip archive, whatever its name."""
    if size == 0:
        raise ModelError(f"{path.name} is an empty file (0 bytes): an interrupted download or copy? "
                         "Download or copy it again.")
    if head.startswith(LFS_MAGIC):
        raise ModelError(_lfs_message(path, size))
    pickled = head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5
    zipped = head[:4] in (b"PK\x03\x04", b"PK\x05\x06")
    if not (pickled or zipped):
        return
    what = "a Python pickle" if pickled else "a PyTorch zip archive (a pickle inside a zip)"
    if path.suffix.lower() in PICKLED_SUFFIXES:
        raise ModelError(f"{path.name} is a PyTorch checkpoint ({what}). Pickles can run code when loaded, so "
                         f"this app opens only .safetensors files: {CONVERT_HINT}.")
    raise ModelError(f"{path.name} is not a safetensors file: it is {what}; pickles can run code when loaded, "
                     "so this app does not open them.")


def _lfs_message(path: Path, size: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    real = re.search(r"^size (\d+)", text, re.MULTILINE)
    real_size = f" (the model is {int(real.group(1)):,} bytes)" if real else ""
    return (f"{path.name} is a Git-LFS pointer of {size:,} bytes, not the model{real_size}. Fetch the real file "
            "with `git lfs pull` in the repository it came from, or download the file itself.")


# ---------------------------------------------------------------------------------------------------------------
# 2. what the tensors say


def inspect(path, *, allow_pytorch_upscaler: bool = False) -> FileInfo:
    """What ``path`` holds (a file or a diffusers folder), or a ModelError that says precisely why it cannot be
    used. ``allow_pytorch_upscaler``: accept a ``.pth``/``.pt`` state dict as an upscaler (the upscaler loader
    reads those with ``torch.load(weights_only=True)``); every other pickle is refused."""
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelError(f"Model file not found: {path} does not exist.")
    if path.is_dir():
        return _inspect_folder(path)
    size = path.stat().st_size
    if allow_pytorch_upscaler and path.suffix.lower() in (".pth", ".pt") and size > 0:
        from .engine import upscaler_files

        upscaler_files.check_readable(path)  # refuses TorchScript and damaged archives
        if upscaler_files.sniff(path) != upscaler_files.SAFETENSORS:
            return FileInfo(path, UPSCALER, "unknown", "pytorch", size, 0,
                            "A PyTorch upscaler state dict, read with torch.load(weights_only=True).")
    header = read_header(path)
    shapes = {name: entry["shape"] for name, entry in header.items()}
    kind, family, layout, details = classify(shapes)
    return FileInfo(path, kind, family, layout, size, len(shapes), details)


def classify(shapes: dict[str, list[int]]) -> tuple[str, str, str, str]:
    """(kind, family, layout, details) from tensor names and shapes."""
    keys = shapes.keys()
    if not shapes:
        return UNKNOWN, "unknown", "empty", "A safetensors file with no tensors."
    for step in (_embedding, _lora, _original_checkpoint, _upscaler, _diffusers_component):
        found = step(shapes, keys)
        if found is not None:
            return found
    return UNKNOWN, "unknown", "unknown", f"{len(shapes):,} tensors whose names match no model this app knows."


def _embedding(shapes, keys):
    if "emb_params" in shapes:
        vectors, width = _rows_width(shapes["emb_params"])
        family = {768: "sd1", 1024: "sd2", 384: "embedded"}.get(width, "unknown")
        return EMBEDDING, family, "textual-inversion", f"A textual-inversion embedding of {vectors} vector(s), " \
                                                       f"{width} wide ({FAMILY_NAMES[family]})."
    param = [k for k in keys if k.startswith("string_to_param")]
    if param:
        vectors, width = _rows_width(shapes[param[0]])
        family = {768: "sd1", 1024: "sd2", 384: "embedded"}.get(width, "unknown")
        return EMBEDDING, family, "textual-inversion", f"A textual-inversion embedding of {vectors} vector(s), " \
                                                       f"{width} wide ({FAMILY_NAMES[family]})."
    if set(keys) <= {"clip_l", "clip_g"} and "clip_g" in keys:
        vectors, _ = _rows_width(shapes["clip_g"])
        details = f"An SDXL textual-inversion embedding of {vectors} vector(s)."
        return EMBEDDING, "sdxl", "textual-inversion", details
    return None


def _rows_width(shape: list[int]) -> tuple[int, int]:
    if not shape:
        return 0, 0
    return (shape[0] if len(shape) > 1 else 1), shape[-1]


def _lora(shapes, keys):
    kohya = any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in keys)
    peft = any(".lora_A." in k or ".lora_B." in k or ".lora.down." in k or ".lora.up." in k for k in keys)
    if not kohya and not peft and not any(k.endswith(".lora_down.weight") for k in keys):
        return None
    layout = "kohya" if kohya else "diffusers"
    joined = " ".join(keys)
    family = "unknown"
    if "double_blocks" in joined or "single_blocks" in joined or "single_transformer_blocks" in joined:
        family = "flux"
    elif "joint_blocks" in joined or "context_block" in joined or (
            "transformer.transformer_blocks." in joined and ".attn.add_k_proj." in joined):  # diffusers SD3
        family = "sd3"
    else:
        widths = {shape[-1] for k, shape in shapes.items() if _CROSS_ATTN_K.search(k) and _LORA_DOWN.search(k)
                  and shape}
        family = _family_from_widths(widths)
        if family == "unknown" and any(k.startswith(("lora_te2_", "text_encoder_2.", "lora_te2.")) for k in keys):
            family = "sdxl"
    modules = sum(1 for k in keys if _LORA_DOWN.search(k))
    ranks = sorted({shapes[k][0] for k in keys if _LORA_DOWN.search(k) and shapes[k]})
    rank = f"rank {ranks[0]}" if len(ranks) == 1 else (f"ranks {ranks[0]}-{ranks[-1]}" if ranks else "")
    parts = [f"{modules} layers", rank]
    return LORA, family, layout, (f"A {'kohya' if kohya else 'diffusers/PEFT'} LoRA for "
                                  f"{FAMILY_NAMES[family]} ({', '.join(p for p in parts if p)}).")


def _family_from_widths(widths: set[int]) -> str:
    for width in sorted(widths, reverse=True):
        if width in CONTEXT_FAMILIES:
            return CONTEXT_FAMILIES[width]
    return "unknown"


def _cross_attention_width(shapes, prefix: str = "") -> str:
    widths = {shape[-1] for k, shape in shapes.items()
              if k.startswith(prefix) and k.endswith("attn2.to_k.weight") and shape}
    return _family_from_widths(widths)


def _original_checkpoint(shapes, keys):
    if any(k in shapes for k in KEYS_FLUX):
        return _checkpoint("flux", shapes, keys, "A Flux transformer")
    if any(k in shapes for k in KEYS_SD3):
        return _checkpoint("sd3", shapes, keys, "A Stable Diffusion 3 transformer")
    has_unet = any(k.startswith(UNET_PREFIX) for k in keys)
    xl_base = any(k.startswith(KEY_XL_BASE) for k in keys)
    xl_refiner = any(k.startswith(KEY_XL_REFINER) for k in keys)
    sd1_text = any(k.startswith(KEY_CLIP_SD1) for k in keys)
    sd2_text = any(k.startswith(KEY_OPEN_CLIP_SD2) for k in keys)
    if not (has_unet or xl_base or xl_refiner or sd1_text or sd2_text):
        return None
    by_shape = _cross_attention_width(shapes, UNET_PREFIX)
    if xl_base:
        family = "sdxl"
    elif xl_refiner:
        family = "sdxl-refiner"
    elif sd2_text:
        family = "sd2"
    elif sd1_text:
        family = "sd1"
    else:
        family = by_shape
    if family == "sd2" and KEY_V_PRED in shapes:
        family = "sd2-v"
    if by_shape != "unknown" and by_shape != family.removesuffix("-v"):
        # the text encoder and the UNet disagree: trust the UNet's width, which decides what loads
        family = by_shape
    return _checkpoint(family, shapes, keys, "A single-file checkpoint")


def _checkpoint(family, shapes, keys, what):
    parts = []
    if any(k.startswith(UNET_PREFIX) for k in keys) or family in ("flux", "sd3"):
        parts.append("UNet" if family not in ("flux", "sd3") else "transformer")
    if any(k.startswith(("cond_stage_model.", "conditioner.", "text_encoders.")) for k in keys):
        parts.append("text encoder")
    if any(k.startswith(("first_stage_model.", "vae.")) for k in keys):
        parts.append("VAE")
    holds = f" with {', '.join(parts)}" if parts else ""
    inpaint = shapes.get(UNET_PREFIX + "input_blocks.0.0.weight")
    extra = " (inpainting)" if inpaint and len(inpaint) > 1 and inpaint[1] == 9 else ""
    return CHECKPOINT, family, "original", f"{what} for {FAMILY_NAMES[family]}{extra}{holds}, " \
                                          f"{len(shapes):,} tensors."


# the state-dict layouts spandrel reads (ESRGAN old and new, Real-ESRGAN compact, SwinIR, ...)
_UPSCALER_PREFIXES = ("conv_first.", "body.0.", "model.0.weight", "model.1.sub.", "RRDB_trunk.", "upconv1.",
                      "conv_body.", "layers.0.residual_group.", "patch_embed.", "head.0.")


def _upscaler(shapes, keys):
    if not any(k.startswith(_UPSCALER_PREFIXES) for k in keys):
        return None
    return UPSCALER, "unknown", "state-dict", f"A super-resolution (upscaler) model, {len(shapes):,} tensors."


def _diffusers_component(shapes, keys):
    if not any(k.startswith(("down_blocks.", "mid_block.", "transformer_blocks.", "encoder.down_blocks.")) for k
               in keys):
        return None
    family = _cross_attention_width(shapes)
    return UNKNOWN, family, "diffusers-component", ("One component of a diffusers model (its UNet, VAE or "
                                                    "transformer weights); add the whole model folder instead.")


# ---------------------------------------------------------------------------------------------------------------
# 3. diffusers folders

_PIPELINE_FAMILIES = {
    "StableDiffusionXLPipeline": "sdxl", "StableDiffusionXLImg2ImgPipeline": "sdxl-refiner",
    "StableDiffusion3Pipeline": "sd3", "FluxPipeline": "flux",
}


def _inspect_folder(folder: Path) -> FileInfo:
    folder = model_folder.check_folder(str(folder))
    index = model_folder.read_index(folder)
    files = [p for p in folder.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files)
    weights = [p for p in files if p.suffix == ".safetensors" and p.parent.name != "upscaler"]
    if not weights:
        raise ModelError(f"{folder} has no .safetensors weights. Pickled weights (.bin, .ckpt) are not "
                         "loaded, because they can run code.")
    count = sum(len(read_header(p)) for p in weights)
    pipeline = str(index.get("_class_name", ""))
    if model_folder.is_embedded(index):
        family = "embedded"
    elif pipeline in _PIPELINE_FAMILIES:
        family = _PIPELINE_FAMILIES[pipeline]
    else:
        family = _folder_unet_family(folder)
    return FileInfo(folder, DIFFUSERS, family, "diffusers", size, count,
                    f"A diffusers model folder ({pipeline or 'unknown pipeline'}) for {FAMILY_NAMES[family]}.")


def _folder_unet_family(folder: Path) -> str:
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text(encoding="utf-8"))
        family = CONTEXT_FAMILIES.get(unet.get("cross_attention_dim"), "unknown")
    except (OSError, ValueError, AttributeError):
        return "unknown"
    if family == "sd2":
        try:
            scheduler = json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
            if scheduler.get("prediction_type") == "v_prediction":
                family = "sd2-v"
        except (OSError, ValueError, AttributeError):
            pass
    return family

"""What a model file or folder holds, read without torch: safety checks, kind, family and layout.

The content decides, never the name. A ``.safetensors`` file is checked by reading its header by hand (8-byte
little-endian length, a JSON header, data offsets) against the file size, without loading any tensor. Pickles
and zip archives (PyTorch checkpoints) are refused whatever they are called, because unpickling can run code.
The family comes from tensor key names and shapes: the key names are those diffusers' ``single_file_utils``
(``CHECKPOINT_KEY_NAMES``) uses to tell checkpoints apart. The transformer families (SD3, Flux, Flux.2, Chroma,
Z-Image, Qwen-Image, Sana, PixArt) are recognised by ``families.recognise``, in their makers' layout and in
diffusers'; whether this version runs them is ``families.is_supported``.

This module imports only the standard library and the app's torch-free modules: the window uses it.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from desktop_app.models import families, foreign_files, header_cache, lora_width, model_folder
from desktop_app.errors import ModelError
from desktop_app.errors import printable

# kinds
CHECKPOINT, DIFFUSERS, LORA, EMBEDDING, UPSCALER, UNKNOWN = (
    "checkpoint", "diffusers", "lora", "embedding", "upscaler", "unknown")
KINDS = (CHECKPOINT, DIFFUSERS, LORA, EMBEDDING, UPSCALER, UNKNOWN)

FAMILY_NAMES = {**families.display_names(), "unknown": "an unknown family"}

MAX_HEADER = 100_000_000  # the safetensors library's own limit on the JSON header
# the dtypes of the safetensors format (its Rust ``Dtype``), in bits: F4 and F6 pack several values per byte
DTYPE_BITS = {"BOOL": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8,
              "F8_E8M0": 8, "I16": 16, "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32,
              "C64": 64, "F64": 64, "I64": 64, "U64": 64}
ENTRY_KEYS = {"dtype", "shape", "data_offsets"}
HEADER_DEPTH = 3  # the header object, a tensor's entry, its shape list
LIMIT = 2**64 - 1  # the format's sizes are 64-bit unsigned

# from diffusers.loaders.single_file_utils.CHECKPOINT_KEY_NAMES (original single-file layouts)
KEY_XL_BASE = "conditioner.embedders.1."
KEY_XL_REFINER = "conditioner.embedders.0."
KEY_CLIP_SD1 = "cond_stage_model.transformer."
KEY_OPEN_CLIP_SD2 = "cond_stage_model.model."
KEY_V_PRED = "v_pred"  # the marker A1111 and ComfyUI write into v-prediction SD2 checkpoints
UNET_PREFIX = "model.diffusion_model."

_CROSS_ATTN_K = re.compile(r"attn2[._]to_k")
_LORA_DOWN = re.compile(r"(\.lora_down\.weight|\.lora_A\.weight|\.lora\.down\.weight|\.lora_A\.default\.weight)$")


@dataclass(frozen=True)
class FileInfo:
    path: Path
    kind: str  # one of KINDS
    family: str  # a key of families.FAMILIES ("sd1", "sdxl", "flux", "sd3", "z-image", ...) or "unknown"
    layout: str  # "original", "diffusers", "kohya", "peft", "textual-inversion", "pytorch", ...
    size_bytes: int
    tensor_count: int
    details: str  # a short sentence for the window
    variant: str = ""  # the published model of a transformer family (a families.Variant key), "" if none fits

    @property
    def family_name(self) -> str:
        return FAMILY_NAMES.get(self.family, self.family)


# ---------------------------------------------------------------------------------------------------------------
# 1. the safetensors header, checked by hand


# the prediction types a single-file checkpoint may be told (models add --prediction-type, a .yaml beside it)
PREDICTION_TYPES = {"v": "v_prediction", "v_prediction": "v_prediction", "epsilon": "epsilon", "eps": "epsilon"}


def normalize_prediction_type(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return PREDICTION_TYPES[value.strip().lower()]
    except KeyError:
        raise ModelError(f"Unknown prediction type {value!r}: use v or epsilon.") from None


def read_header(path: Path) -> dict:
    """The safetensors header of ``path`` (tensor name -> {"dtype", "shape", "data_offsets"}; "__metadata__"
    removed), checked in full against the format and the file size (``check_header``). Only a regular file
    is opened (a named pipe would block). Raises ModelError naming what is wrong. Read once while the file is
    unchanged (header_cache): the dict is the caller's, its entries are shared and must not be changed."""
    return dict(header_cache.cached("safetensors", path, _read_header)[0])


def read_metadata(path: Path) -> dict[str, str]:
    """The safetensors "__metadata__" of ``path`` (text to text; {} when it has none), from the same one read
    of the header as ``read_header`` (and its ModelErrors)."""
    return dict(header_cache.cached("safetensors", path, _read_header)[1])


def _read_header(path: Path) -> tuple[dict, dict[str, str]]:
    """(the tensors' entries, the metadata) of the safetensors file ``path``, read and checked: read_header."""
    path = Path(path)
    shown = _shown(path)
    with model_folder.open_regular(path, "model file") as handle:
        try:
            size = os.fstat(handle.fileno()).st_size
            start = handle.read(128)
            foreign_files.refuse_foreign(path, start, size)
            if size < 8:
                raise ModelError(f"{shown} is not a safetensors file: it has only {size} bytes, fewer than "
                                 "the 8-byte header length a safetensors file starts with.")
            (header_len,) = struct.unpack("<Q", start[:8])
            if header_len > size - 8:
                raise ModelError(f"{shown} is damaged or truncated: its header claims {header_len:,} bytes "
                                 f"but the whole file has only {size:,}.")
            if header_len > MAX_HEADER:
                raise ModelError(f"{shown} is not a usable safetensors file: its header is {header_len:,} "
                                 f"bytes, more than the {MAX_HEADER:,} the format allows.")
            handle.seek(8)
            raw = handle.read(header_len)
        except OSError as exc:
            raise ModelError(f"Cannot read {_shown(path, full=True)}: {exc.strerror or exc}.") from None
    if len(raw) != header_len:
        raise ModelError(f"{shown} changed while it was read (its header is shorter than it says).")
    return _checked(raw, size - 8 - header_len, path.name)


def check_header(raw: bytes, data_size: int, name: str = "the file") -> dict:
    """The tensors a safetensors header ``raw`` (the JSON after the 8-byte length) describes, checked as the
    format defines it: a JSON object (no key twice); "__metadata__" a map of text to text (or null); every
    other key a tensor whose entry has "dtype" (a known one), "shape" (whole
    numbers >= 0) and "data_offsets" ([begin, end]), whose byte size is the product of its shape times its
    dtype's size; the tensors, ordered by offset, cover the ``data_size`` bytes after the header from 0 to
    the end, without gaps or overlaps. Time and memory are linear in the header's length; the only error
    raised is ModelError, whose message names the file (``name``) and the problem."""
    return _checked(raw, data_size, name)[0]


def _checked(raw: bytes, data_size: int, name: str) -> tuple[dict, dict[str, str]]:
    """check_header's tensors, and the header's "__metadata__" ({} when null or absent)."""
    shown = printable(name, 120)
    if not raw.lstrip(b" \t\r\n").startswith(b"{"):  # the format's reader allows JSON whitespace first
        raise ModelError(f"{shown} is damaged or not a safetensors file: its {len(raw):,}-byte header is not "
                         "JSON (it must start with '{').")
    try:
        header = model_folder.parse_json(raw.decode("utf-8"), HEADER_DEPTH)
    except UnicodeDecodeError:
        raise ModelError(f"{shown} is damaged or not a safetensors file: its {len(raw):,}-byte header is not "
                         "JSON (not UTF-8 text).") from None
    except ValueError as exc:
        raise ModelError(f"{shown} is damaged or not a safetensors file: its {len(raw):,}-byte header is not "
                         f"JSON ({printable(exc, 120)}).") from None
    if not isinstance(header, dict):
        raise ModelError(f"{shown} is damaged: its safetensors header is not a JSON object.")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (isinstance(metadata, dict) and all(
            isinstance(v, str) and _valid_text(k) and _valid_text(v) for k, v in metadata.items())):
        raise ModelError(f"{shown} is damaged: its \"__metadata__\" is not a map of text to text, as the "
                         "safetensors format requires.")
    spans = []
    for tensor, entry in header.items():
        spans.append((*_check_entry(shown, tensor, entry), tensor))
    spans.sort(key=lambda span: (span[0], span[1]))
    position, previous = 0, None
    for begin, end, tensor in spans:
        if begin > position:
            raise ModelError(f"{shown} is damaged: bytes {position:,} to {begin:,} of its data belong to no "
                             f"tensor (a gap before {_tensor(tensor)}).")
        if begin < position:
            raise ModelError(f"{shown} is damaged: tensors {_tensor(previous)} and {_tensor(tensor)} overlap "
                             "in the file.")
        position, previous = end, tensor
    if position > data_size:
        raise ModelError(f"{shown} is truncated: the header describes {position:,} bytes of tensors, the file "
                         f"has {data_size:,}. Download or copy it again.")
    if position < data_size:
        raise ModelError(f"{shown} is damaged: {data_size - position:,} bytes after its last tensor belong to "
                         "no tensor.")
    return header, metadata or {}


def _check_entry(shown: str, tensor: str, entry) -> tuple[int, int]:
    """(begin, end) of one tensor's bytes, or a ModelError for a malformed entry."""
    bad = f"{shown} is damaged: the header entry for tensor {_tensor(tensor)}"
    if not _valid_text(tensor):
        raise ModelError(f"{bad} has a name that is not valid text.")
    if not isinstance(entry, dict) or not ENTRY_KEYS <= set(entry):  # other keys: ignored, as the reader does
        raise ModelError(f"{bad} is malformed (it needs \"dtype\", \"shape\" and \"data_offsets\").")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    bits = DTYPE_BITS.get(dtype) if isinstance(dtype, str) else None
    if bits is None:
        raise ModelError(f"{bad} has the unknown dtype {printable(dtype, 40)}; the safetensors format knows "
                         f"{', '.join(DTYPE_BITS)}.")
    if not isinstance(shape, list) or not all(_whole(v) for v in shape):
        raise ModelError(f"{bad} is malformed: its shape must be a list of whole numbers >= 0.")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_whole(v) for v in offsets)
            and offsets[0] <= offsets[1]):
        raise ModelError(f"{bad} is malformed: its data_offsets must be [begin, end], whole numbers with "
                         "begin <= end.")
    count = 1
    for dim in shape:  # as the format's reader does: every partial product must fit 64 bits
        count *= dim
        if count > LIMIT:
            raise ModelError(f"{bad} has an impossible shape {printable(shape, 80)} (more elements than a "
                             "64-bit size can count).")
    nbits = count * bits
    if nbits > LIMIT or nbits % 8:
        raise ModelError(f"{bad} has an impossible shape {printable(shape, 80)} for {dtype} (its size is not "
                         "a whole number of bytes a 64-bit size can count).")
    begin, end = offsets
    if nbits // 8 != end - begin:
        raise ModelError(f"{shown} is damaged: tensor {_tensor(tensor)} ({dtype} {printable(shape, 80)}) needs "
                         f"{nbits // 8:,} bytes but the header gives it {end - begin:,}.")
    return begin, end


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= LIMIT


def _valid_text(value) -> bool:
    if not isinstance(value, str):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\\ud800" in the JSON): no text the format can hold
        return False
    return True


def _tensor(name) -> str:
    return printable(repr(name) if isinstance(name, str) else name, 80)


def _shown(path: Path, full: bool = False) -> str:
    return printable(path if full else Path(path).name, 200)


# ---------------------------------------------------------------------------------------------------------------
# 2. what the tensors say


def inspect(path, *, allow_pytorch_upscaler: bool = False) -> FileInfo:
    """What ``path`` holds (a file or a diffusers folder), or a ModelError that says precisely why it cannot be
    used. ``allow_pytorch_upscaler``: accept a ``.pth``/``.pt`` state dict as an upscaler (the upscaler loader
    reads those with ``torch.load(weights_only=True)``); every other pickle is refused."""
    path = Path(path).expanduser()
    try:
        special = model_folder.special_file(path)
    except FileNotFoundError:
        raise ModelError(f"Model file not found: {_shown(path, full=True)} does not exist.") from None
    except OSError as exc:
        raise ModelError(f"Cannot read {_shown(path, full=True)}: {exc.strerror or exc}.") from None
    if special == "a folder":
        return _inspect_folder(path)
    if special is not None:  # never opened: reading a named pipe would wait for a writer forever
        raise ModelError(f"{_shown(path)} is {special}, not a model file; only regular files are read.")
    size = path.stat().st_size
    if allow_pytorch_upscaler and path.suffix.lower() in (".pth", ".pt") and size > 0:
        from desktop_app.models import upscaler_files

        upscaler_files.check_readable(path)  # refuses TorchScript and damaged archives
        if upscaler_files.sniff(path) != upscaler_files.SAFETENSORS:
            return FileInfo(path, UPSCALER, "unknown", "pytorch", size, 0,
                            "A PyTorch upscaler state dict, read with torch.load(weights_only=True).")
    shapes = _shapes(path)
    kind, family, layout, details = classify(shapes)
    found = families.recognise(shapes) if kind == CHECKPOINT else None
    variant = found.variant if found and found.family == family else ""
    return FileInfo(path, kind, family, layout, size, len(shapes), details, variant)


def _shapes(path: Path) -> dict[str, list[int]]:
    """The tensor shapes of a safetensors or GGUF file. The content decides: a file not named .gguf is read as
    safetensors, and only when that fails is it looked at for GGUF's "GGUF" first (a GGUF file under another
    name is refused in gguf_files); a .gguf name must hold one. So one open reads a safetensors file's header,
    kept for the other readers of it (header_cache)."""
    from desktop_app.models import gguf_files

    if path.suffix.lower() != gguf_files.SUFFIX:
        try:
            return {name: entry["shape"] for name, entry in read_header(path).items()}
        except ModelError as exc:
            try:
                foreign = not gguf_files.is_gguf(_head(path))
            except ModelError:
                foreign = True
            if foreign:
                raise exc from None
    return gguf_files.read_shapes(path, header_cache.cached("head", path, _head))


def _head(path: Path) -> bytes:
    with model_folder.open_regular(path, "model file") as handle:
        return handle.read(4)


def classify(shapes: dict[str, list[int]]) -> tuple[str, str, str, str]:
    """(kind, family, layout, details) from tensor names and shapes."""
    keys = shapes.keys()
    if not shapes:
        return UNKNOWN, "unknown", "empty", "A safetensors file with no tensors."
    for step in (_embedding, _lora, _transformer, _original_checkpoint, _upscaler, _diffusers_component):
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
    elif "joint_blocks" in joined or "context_block" in joined:
        family = "sd3"
    elif any(lora_width.JOINT_ATTENTION_A.search(k) for k in keys):  # names Flux.1 and SD3 share: the width
        family = lora_width.joint_attention_family(shapes)
    else:
        widths = {shape[-1] for k, shape in shapes.items() if _CROSS_ATTN_K.search(k) and _LORA_DOWN.search(k)
                  and shape}
        family = families.family_from_widths(widths)
        if family == "unknown" and any(k.startswith(("lora_te2_", "text_encoder_2.", "lora_te2.")) for k in keys):
            family = "sdxl"
    modules = sum(1 for k in keys if _LORA_DOWN.search(k))
    ranks = sorted({shapes[k][0] for k in keys if _LORA_DOWN.search(k) and shapes[k]})
    rank = f"rank {ranks[0]}" if len(ranks) == 1 else (f"ranks {ranks[0]}-{ranks[-1]}" if ranks else "")
    parts = [f"{modules} layers", rank]
    return LORA, family, layout, (f"A {'kohya' if kohya else 'diffusers/PEFT'} LoRA for "
                                  f"{FAMILY_NAMES[family]} ({', '.join(p for p in parts if p)}).")


def _cross_attention_width(shapes, prefix: str = "") -> str:
    widths = {shape[-1] for k, shape in shapes.items()
              if k.startswith(prefix) and k.endswith("attn2.to_k.weight") and shape}
    return families.family_from_widths(widths)


def _transformer(shapes, keys):
    """A transformer family's single file (the transformer alone, or with text encoders and VAE), in its makers'
    layout or diffusers'."""
    found = families.recognise(shapes)
    if found is None:
        return None
    variant = families.FAMILIES[found.family].variant(found.variant)
    named = f" ({variant.name})" if variant else ""
    layout = "its makers' layout" if found.layout == "original" else "diffusers' layout"
    extra = _components(keys)
    holds = f", with {' and '.join(extra)}" if extra else ""
    details = (f"A {FAMILY_NAMES[found.family]} transformer{named} in {layout}{holds}, {len(shapes):,} "
               "tensors.")
    if found.family in families.SINGLE_FILES:
        details += f" Runs with the text encoders and VAE of a {FAMILY_NAMES[found.family]} diffusers folder " \
                   "(its components)."
    elif found.family in families.FOLDERS_ONLY:  # a transformer family run as a folder only
        details += " Recognised; this version runs it as a diffusers folder, not yet as a single file."
    elif not families.is_supported(found.family, single_file=True):
        details += " Recognised; this version of the app does not run it yet."
    return CHECKPOINT, found.family, found.layout, details


def _components(keys) -> list[str]:
    """The text encoder and VAE a single file carries besides its UNet or transformer."""
    parts = []
    if any(k.startswith(("cond_stage_model.", "conditioner.", "text_encoders.")) for k in keys):
        parts.append("text encoder")
    if any(k.startswith(("first_stage_model.", "vae.")) for k in keys):
        parts.append("VAE")
    return parts


def _original_checkpoint(shapes, keys):
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
    parts = ["UNet"] if any(k.startswith(UNET_PREFIX) for k in keys) else []
    parts += _components(keys)
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


def _inspect_folder(folder: Path) -> FileInfo:
    folder = model_folder.check_folder(str(folder))
    index = model_folder.read_index(folder)
    files = [p for p in folder.rglob("*") if p.is_file()]  # is_file: regular files (and links to them) only
    try:
        size = sum(p.stat().st_size for p in files)
    except OSError as exc:
        raise ModelError(f"Cannot read the model folder {_shown(folder, full=True)}: {exc.strerror or exc}.") \
            from None
    weights = [p for p in files if p.suffix == ".safetensors" and p.parent.name != "upscaler"]
    if not weights:
        raise ModelError(f"{_shown(folder, full=True)} has no .safetensors weights. Pickled weights (.bin, "
                         ".ckpt) are not loaded, because they can run code.")
    count = sum(len(read_header(p)) for p in weights)
    pipeline = str(index.get("_class_name", ""))
    family, variant = families.folder_family(folder, index)
    named = families.FAMILIES[family].variant(variant) if family in families.FAMILIES else None
    details = (f"A diffusers model folder ({pipeline or 'unknown pipeline'}) for {FAMILY_NAMES[family]}"
               f"{f' ({named.name})' if named else ''}.")
    if family != "unknown" and not families.is_supported(family):
        details += " Recognised; this version of the app does not run it yet."
    return FileInfo(folder, DIFFUSERS, family, "diffusers", size, count, details, variant)

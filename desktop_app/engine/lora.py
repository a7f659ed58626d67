"""LoRAs and textual-inversion embeddings on a loaded pipeline, through diffusers' own peft backend.

``apply_loras(model, request.loras)`` makes the pipeline's adapters match the request: the same set of files
as last time is not loaded again (only the weights change, by ``set_adapters``); another set unloads the old
adapters first (``unload_lora_weights`` takes the peft layers out again, so the base model is exactly what it
was). diffusers reads both key layouts: its own (peft/diffusers) and kohya's (``lora_unet_...``).

Before loading, each file is checked: a safetensors file in fact (the content decides, not the name), and
for the model's family, read from its header (lora_families.py: key names and shapes): an SD LoRA on Flux.1 or
SD3 and the reverse are refused naming both families; among the SD families, the LoRA's cross-attention width
tells them apart (768 SD 1.x, 1024 SD 2.x, 2048 SDXL). The transformer families load through their pipelines'
own loaders (FluxPipeline, StableDiffusion3Pipeline, SanaPipeline, ZImagePipeline, QwenImagePipeline,
Flux2KleinPipeline ...), which convert kohya's and ComfyUI's layouts where they know them.
"""

from __future__ import annotations

import logging
import re
import warnings
import weakref
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from desktop_app.errors import ModelError, one_line
from desktop_app.models.model_hash import model_hash

log = logging.getLogger(__name__)

LORA_SUFFIX = ".safetensors"
DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"  # the file in a diffusers-format LoRA folder
# cross-attention width -> the family people know
FAMILY_BY_WIDTH = {768: "SD 1.x", 1024: "SD 2.x", 2048: "SDXL", 384: "the embedded default model"}
_FAMILY_NAMES = {"sd1": "SD 1.x", "sd2": "SD 2.x", "sdxl": "SDXL", "embedded": "the embedded default model"}
# the down-projection of a cross-attention key: its input width is the text encoder's width
_TO_K_DOWN = re.compile(r"attn2[._]to_k(?:[._]lora)?[._](?:lora_down|lora_A|down)\.weight$")

# pipeline -> the LoRA set it holds now (weak: a pipeline that is freed takes its entry with it)
_held: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@dataclass(frozen=True)
class AppliedLora:
    name: str  # as the request named it
    weight: float
    path: Path
    adapter: str  # the adapter name in the pipeline
    hash: str | None  # sha256, first 10 hex digits (AUTOMATIC1111's "Lora hashes")


# ---- finding and checking files -------------------------------------------------------------------------


def resolve_lora(name: str) -> Path:
    """The file for a LoRA name or path: a diffusers-format LoRA folder (its pytorch_lora_weights file), else
    the model library's answer (a path, a library name, NAME or NAME.safetensors in the user's LoRA folder).
    ModelError names what was looked for."""
    from desktop_app import paths
    from desktop_app.models.safe_names import UnsafeName, check_name
    from desktop_app.errors import printable

    given = Path(name).expanduser()
    if given.is_dir() and (given / DIFFUSERS_FILE).is_file():
        return given / DIFFUSERS_FILE
    if given.is_file():
        return given
    # not a file the user has: a name, looked up in the library and inside the LoRA folder only, so it is
    # checked first (``../../x`` or ``/abs/x`` must not reach outside the LoRA folder)
    try:
        check_name(name, "LoRA name")
    except UnsafeName as exc:
        if given.exists():
            raise ModelError(f"LoRA {printable(name, 80)} is a folder without {DIFFUSERS_FILE}; give the "
                             "LoRA's .safetensors file") from None
        raise ModelError(f"LoRA {printable(name, 80)} not found: it is not a file, and as a name: {exc}") from None
    folder = paths.loras_dir() / name
    if folder.is_dir() and (folder / DIFFUSERS_FILE).is_file():
        return folder / DIFFUSERS_FILE
    try:
        from desktop_app.models.model_library import resolve_lora as library_resolve
    except ImportError:  # the library is optional here: a path, or a file in the LoRA folder
        library_resolve = None
    if library_resolve is not None:
        return Path(library_resolve(name))
    folder = paths.loras_dir()
    for candidate in (Path(name).expanduser(), folder / name, folder / f"{name}{LORA_SUFFIX}"):
        if candidate.is_file():
            return candidate
    raise ModelError(f"LoRA {printable(name, 80)} not found: it is not a file, and {folder} has no "
                     f"{printable(name + LORA_SUFFIX, 90)}")


def check_file(path: Path, kind: str = "lora", name: str | None = None) -> str:
    """Refuse what is not a safe, readable safetensors file of ``kind`` ("lora" or "embedding") before
    diffusers sees it; the content decides (model_files.inspect: pickles, zips, LFS pointers, truncation,
    each with its message). Returns the family the file says it is for ("unknown" when it does not say)."""
    try:
        from desktop_app.models.model_files import inspect
    except ImportError:
        inspect = None
    name = name or path.name
    if inspect is not None:
        info = inspect(path)  # raises ModelError for unsafe or broken files
        if info.kind != kind:
            raise ModelError(f"{name} is not a {'LoRA' if kind == 'lora' else 'textual-inversion embedding'}: "
                             f"{info.details}")
        return info.family
    from safetensors import SafetensorError, safe_open

    if path.suffix.lower() != LORA_SUFFIX:
        raise ModelError(f"{name}: only .safetensors files are loaded; pickled files (.ckpt, .pt, .bin) can run "
                         "code when opened")
    try:
        with safe_open(str(path), framework="pt") as handle:
            keys = list(handle.keys())
    except (SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"{name} is not a readable safetensors file ({one_line(exc)}); the app loads only "
                         "safetensors, never pickles, because a pickle can run code") from None
    if not keys:
        raise ModelError(f"{name} holds no tensors")
    return "unknown"


def read_lora_info(path: Path) -> dict:
    """What the LoRA's header says, without loading tensors: cross-attention width (or None), key layout
    ("kohya" or "diffusers"), the number of tensors and the trigger words from kohya's metadata. The header
    is read once while the file is unchanged (models/header_cache.py), for every reader of a LoRA."""
    from desktop_app.models.model_files import read_header, read_metadata

    header = read_header(path)
    keys = sorted(header)  # safetensors' own reader lists them so
    metadata = read_metadata(path)
    width = None
    for key in keys:
        if _TO_K_DOWN.search(key):
            shape = header[key]["shape"]
            if len(shape) >= 2:
                width = int(shape[1])
                break
    layout = "kohya" if any(k.startswith(("lora_unet_", "lora_te")) for k in keys) else (
        "ComfyUI" if any(k.startswith("diffusion_model.") for k in keys) else "diffusers")
    return {"cross_attention": width, "layout": layout, "tensors": len(keys),
            "trigger": trigger_words(metadata)}


def trigger_words(metadata: dict) -> str:
    """The trigger word(s) a LoRA's safetensors metadata names: kohya's ``ss_tag_frequency`` (the most
    frequent tag), or a plain ``trigger_word``/``instance_prompt`` field. Empty when there is none."""
    import json

    for key in ("desktop_app_trigger", "trigger_word", "trigger_words", "ss_trigger_word", "instance_prompt",
                "modelspec.trigger_phrase"):
        value = metadata.get(key)
        if value:
            return str(value).strip()
    raw = metadata.get("ss_tag_frequency")
    if raw:
        try:
            frequencies = json.loads(raw)
            counts: dict[str, int] = {}
            for tags in frequencies.values():
                for tag, count in tags.items():
                    counts[tag.strip()] = counts.get(tag.strip(), 0) + int(count)
            if counts:
                return max(counts, key=counts.get)
        except (ValueError, AttributeError, TypeError):
            return ""
    return ""


def check_fits(name: str, info: dict, model, path: Path | None = None) -> None:
    """ModelError when the LoRA was made for another family: by its key names and shapes (``path``'s header,
    lora_families.check_family), then among the SD families by its cross-attention width."""
    width = info.get("cross_attention")
    family = info.get("family")
    if path is not None:
        from desktop_app.engine.lora_families import check_family

        family = check_family(name, path, family or "unknown", model)
        if getattr(model.pipe, "unet", None) is None:
            return  # a transformer: its widths were checked there
    if family in ("sd3", "flux") and model.family != family:
        raise ModelError(f"LoRA {name} is for {family.upper() if family == 'sd3' else 'Flux'}; the model "
                         f"{model.display_name} is {_FAMILY_NAMES.get(model.family, model.family)}")
    unet = getattr(model.pipe, "unet", None)
    model_width = getattr(getattr(unet, "config", None), "cross_attention_dim", None)
    if width is None or model_width is None or width == model_width:
        return
    lora_family = FAMILY_BY_WIDTH.get(width, "another model")
    model_family = _FAMILY_NAMES.get(model.family) or FAMILY_BY_WIDTH.get(model_width) or "another family"
    raise ModelError(f"LoRA {name} is for {lora_family} (cross-attention {width}); the model "
                     f"{model.display_name} is {model_family} (cross-attention {model_width})")


# ---- applying ------------------------------------------------------------------------------------------


def apply_loras(model, loras, on_load=None) -> list[AppliedLora]:
    """Make ``model.pipe``'s adapters match ``loras`` (LoraChoice items). Returns what is applied.
    ``on_load(text)`` hears about each LoRA file that is actually loaded."""
    pipe = model.pipe
    wanted = [(choice, resolve_lora(choice.name)) for choice in loras]
    key = tuple(_file_key(path) for _, path in wanted)
    held = _held.get(pipe)
    if held is None or held[0] != key:
        if held is not None and held[1]:
            remove_loras(pipe)
        applied = []
        for index, (choice, path) in enumerate(wanted):
            family = check_file(path, "lora", f"LoRA {choice.name}")  # first: nothing unsafe gets read
            info = read_lora_info(path) | {"family": family}
            check_fits(choice.name, info, model, path)
            adapter = f"lora{index}_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)[:40]}"
            if on_load is not None:
                on_load(f"LoRA {choice.name} ({info['layout']} format)")
            note = _load_one(pipe, choice.name, path, adapter)
            if note and on_load is not None:
                on_load(f"LoRA {choice.name}: {note}")
            applied.append(AppliedLora(choice.name, float(choice.weight), path, adapter, model_hash(path)))
        _held[pipe] = (key, applied)
    else:
        applied = [AppliedLora(choice.name, float(choice.weight), item.path, item.adapter, item.hash)
                   for choice, item in zip(loras, held[1])]
        _held[pipe] = (key, applied)
    if applied:
        pipe.set_adapters([item.adapter for item in applied], [item.weight for item in applied])
    return applied


def remove_loras(pipe) -> None:
    """Take every adapter out of the pipeline: the base weights are exactly as loaded."""
    if getattr(pipe, "unload_lora_weights", None) is not None:
        with _quiet():
            pipe.unload_lora_weights()
    _held.pop(pipe, None)


def held_loras(pipe) -> list[AppliedLora]:
    held = _held.get(pipe)
    return list(held[1]) if held else []


def _load_one(pipe, name: str, path: Path, adapter: str) -> str:
    """Load one LoRA under ``adapter``; returns a note for the user about what was left out ("" when nothing)."""
    note = ""
    if not hasattr(pipe, "load_lora_weights"):
        raise ModelError(f"LoRA {name}: the pipeline {type(pipe).__name__} does not take LoRAs")
    try:
        with _quiet():
            if _needs_split(pipe, path):
                _load_split(pipe, path, adapter)
            else:
                from desktop_app.engine.lora_families import flux_state

                state, note = flux_state(pipe, path)
                pipe.load_lora_weights(str(path) if state is None else state, adapter_name=adapter)
    # IndexError, AssertionError: diffusers' converters on a layout they half know
    except (ValueError, RuntimeError, KeyError, TypeError, OSError, IndexError, AssertionError) as exc:
        remove_loras(pipe)
        raise ModelError(f"LoRA {name} does not fit the model: {one_line(exc)}") from None
    loaded = {a for names in pipe.get_list_adapters().values() for a in names}
    if adapter not in loaded:
        remove_loras(pipe)
        raise ModelError(f"LoRA {name} does not fit the model: none of its {path.name} keys matched a layer")
    return note


def _needs_split(pipe, path: Path) -> bool:
    """A diffusers-format LoRA with text-encoder layers for a text encoder that is not CLIP (the embedded
    model's MiniLM, as the LoRA trainer writes them): diffusers converts only CLIP layer names, so the text
    encoder part is loaded with peft directly."""
    encoder = getattr(pipe, "text_encoder", None)
    if encoder is None or "CLIP" in type(encoder).__name__ or getattr(pipe, "unet", None) is None:
        return False  # CLIP, or a transformer family: its pipeline's loader takes the text-encoder part
    from desktop_app.models.model_files import read_header

    return any(k.startswith("text_encoder.") and ".lora_A." in k for k in read_header(path))


def _load_split(pipe, path: Path, adapter: str) -> None:
    """The UNet part through diffusers, the text-encoder part (peft keys) with peft: the same adapter name in
    both, so that set_adapters, get_list_adapters and unload_lora_weights treat it as one LoRA."""
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    state = load_file(str(path))
    text = {k.removeprefix("text_encoder."): v for k, v in state.items() if k.startswith("text_encoder.")}
    rest = {k: v for k, v in state.items() if not k.startswith("text_encoder.")}
    if rest:
        pipe.load_lora_weights(rest, adapter_name=adapter)
    modules = sorted({k.rsplit(".lora_", 1)[0] for k in text if ".lora_A." in k})
    rank = int(next(v.shape[0] for k, v in text.items() if ".lora_A." in k))
    encoder = pipe.text_encoder
    # alpha = rank: what the LoRA trainer (and kohya's converter) assume
    config = LoraConfig(r=rank, lora_alpha=rank, target_modules=modules)
    inject_adapter_in_model(config, encoder, adapter_name=adapter)
    result = set_peft_model_state_dict(encoder, text, adapter_name=adapter)
    unexpected = [k for k in getattr(result, "unexpected_keys", []) or [] if "lora_" in k]
    if unexpected:
        raise ValueError(f"{len(unexpected)} text-encoder LoRA weights match no layer (e.g. {unexpected[0]})")
    encoder.to(device=pipe.unet.device, dtype=pipe.unet.dtype)


def _file_key(path: Path) -> tuple:
    stat = path.stat()
    return (str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@contextmanager
def _quiet():
    """diffusers warns "No LoRA keys associated to BertModel/CLIPTextModel" for UNet-only LoRAs, and logs
    its own errors before raising them: the app reports errors itself."""
    target = logging.getLogger("diffusers")
    saved = target.level
    target.setLevel(logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            # peft, when a second adapter joins the first: intended here (several LoRAs at once)
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            yield
    finally:
        target.setLevel(saved)


# ---- textual-inversion embeddings ----------------------------------------------------------------------


def embeddings_dir() -> Path:
    from desktop_app import paths

    finder = getattr(paths, "embeddings_dir", None)
    if finder is not None:
        return Path(finder())
    folder = paths.home() / "embeddings"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def load_embedding(model, path: Path, token: str | None = None) -> str:
    """Load one textual-inversion embedding (a .safetensors file) under ``token`` (default: the file name
    without its suffix). Returns the token. ModelError for the embedded model (MiniLM has no such support),
    for a pipeline without a CLIP tokenizer, or for a file that does not fit."""
    path = Path(path)
    token = token or path.stem
    pipe = model.pipe
    if model.family == "embedded":
        raise ModelError(f"embedding {path.name}: the embedded default model's text encoder (MiniLM) does not "
                         "take textual-inversion embeddings; use a Stable Diffusion model with a CLIP encoder")
    tokenizer = getattr(pipe, "tokenizer", None)
    if not hasattr(pipe, "load_textual_inversion") or tokenizer is None or "CLIP" not in type(tokenizer).__name__:
        raise ModelError(f"embedding {path.name}: the model {model.display_name} has no CLIP tokenizer, so "
                         "textual-inversion embeddings do not apply to it")
    if token in tokenizer.get_vocab():
        return token  # loaded before (or a word of the vocabulary: then it is not an embedding's to take)
    check_file(path, "embedding", f"embedding {path.name}")
    try:
        with _quiet():
            pipe.load_textual_inversion(str(path), token=token)
    except (ValueError, RuntimeError, KeyError, TypeError, OSError) as exc:
        raise ModelError(f"embedding {path.name} does not fit the model {model.display_name}: "
                         f"{one_line(exc)}") from None
    return token


def apply_embeddings(model, *prompts: str) -> list[str]:
    """Load the embeddings of the user's embeddings folder that the prompts name (as words, the way
    AUTOMATIC1111 does). Returns the tokens loaded or already present."""
    files = {p.stem: p for p in sorted(embeddings_dir().glob(f"*{LORA_SUFFIX}"))}
    if not files:
        return []
    words = set(re.findall(r"[\w\-.]+", " ".join(prompts)))
    return [load_embedding(model, files[name]) for name in sorted(words & files.keys())]


def read_metadata(path: Path) -> dict:
    """The ``__metadata__`` strings of a safetensors file, read by hand (no torch: the window uses this);
    {} when the file has none or cannot be read."""
    import json
    import struct

    try:
        with Path(path).open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > 100_000_000:
                return {}
            header = json.loads(handle.read(length).decode("utf-8"))
    except (OSError, ValueError, struct.error, UnicodeDecodeError):
        return {}
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    return {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}

"""What a model folder declares, read without torch: where it is, its model_index.json, defaults and limits.

The command line reads defaults from here before torch loads; the loader reads the same.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..resources import DEFAULT_MODEL_NAME, default_model_dir
from .errors import ModelError
from .request import DEFAULT_MODEL

EMBEDDED_TEXT_KEY = "_text_encoder_package"
CARD_NAMES = ("MODEL_CARD.md", "README.md")


def resolve(name_or_path: str) -> Path:
    """The folder for "default" (the embedded model) or a path the user gave; not checked here."""
    if name_or_path == DEFAULT_MODEL:
        return default_model_dir()
    return Path(name_or_path).expanduser()


def display_name(name_or_path: str) -> str:
    if name_or_path == DEFAULT_MODEL:
        return DEFAULT_MODEL_NAME
    return Path(name_or_path).expanduser().resolve().name or str(name_or_path)


def check_folder(name_or_path: str) -> Path:
    """The model folder, or a ModelError that names what is missing."""
    folder = resolve(name_or_path)
    if name_or_path == DEFAULT_MODEL and not (folder / "model_index.json").is_file():
        raise ModelError(f"The embedded default model is missing: no model_index.json in {folder}. "
                         "Reinstall the app, or pass --model with a diffusers model folder.")
    if not folder.exists():
        raise ModelError(f"Model not found: {folder} does not exist.")
    if folder.is_file():  # a single-file checkpoint: engine/single_file.py inspects and loads it
        return folder
    if not folder.is_dir():
        raise ModelError(f"Model {folder} is neither a folder nor a file.")
    if not (folder / "model_index.json").is_file():
        raise ModelError(f"{folder} is not a diffusers model folder: it has no model_index.json.")
    return folder


def read_index(folder: Path) -> dict:
    if Path(folder).is_file():  # a single-file checkpoint has no model_index.json: it declares nothing itself
        return {}
    path = Path(folder) / "model_index.json"
    try:
        index = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelError(f"Cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise ModelError(f"{path} is damaged (not valid JSON: {exc}).") from None
    if not isinstance(index, dict):
        raise ModelError(f"{path} is damaged (expected a JSON object).")
    return index


def is_embedded(index: dict) -> bool:
    """The embedded format: a StableDiffusionPipeline whose text encoder comes from a Python package."""
    return bool(index.get(EMBEDDED_TEXT_KEY))


def defaults(index: dict) -> dict:
    """Generation defaults the folder declares ("_defaults": width, height, steps, guidance_scale, sampler,
    upscale), or {}."""
    value = index.get("_defaults")
    return dict(value) if isinstance(value, dict) else {}


def limits(index: dict) -> dict:
    """Size limits the folder declares ("_limits": min_size, max_size), or {}."""
    value = index.get("_limits")
    return dict(value) if isinstance(value, dict) else {}


def card_path(folder: Path) -> Path | None:
    for name in CARD_NAMES:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def upscaler_path(folder: Path) -> Path | None:
    path = Path(folder) / "upscaler" / "model.safetensors"
    return path if path.is_file() else None


def model_defaults(name_or_path: str) -> dict:
    """The defaults a model declares, plus "upscale": "default" when it carries an upscaler. {} when the
    folder cannot be read (the loader reports that properly later)."""
    if resolve(name_or_path).is_file():
        from .single_file import file_defaults

        return file_defaults(resolve(name_or_path))
    try:
        folder = check_folder(name_or_path)
        index = read_index(folder)
    except ModelError:
        return {}
    result = defaults(index)
    if "upscale" not in result and upscaler_path(folder) is not None:
        result["upscale"] = "default"
    return result

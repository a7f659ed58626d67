"""What the window knows about models without loading them: folders, defaults, limits, the model card.

Plain file reads through desktop_app.models.model_folder (no torch there): the engine does the real loading in
the worker thread.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

from desktop_app.models import model_folder, resolve
from desktop_app.errors import ModelError
from desktop_app.resources import DEFAULT_MODEL
from desktop_app.resources import DEFAULT_MODEL_NAME, default_model_dir

__all__ = ["DEFAULT_MODEL_NAME", "default_model_dir", "display_name", "looks_like_model_folder",
           "model_defaults", "model_dir", "read_attributions"]


def model_dir(model: str) -> Path:
    return model_folder.resolve(model)


def model_defaults(model: str) -> dict:
    """{"defaults": {...}, "limits": {...}} as the model folder declares them ({} for what it does not).

    "defaults" includes "upscale": "default" when the folder carries its own upscaler.
    """
    result = {}
    defaults = resolve.model_defaults(model)
    if defaults:
        result["defaults"] = defaults
    try:
        limits = model_folder.limits(model_folder.read_index(model_folder.check_folder(model)))
    except ModelError:
        limits = {}
    if limits:
        result["limits"] = limits
    return result


def is_embedded(model: str) -> bool | None:
    """True for the embedded format (one size, its own upscaler: no hires fix), False for other diffusers
    folders, None when the folder cannot be read."""
    try:
        return model_folder.is_embedded(model_folder.read_index(model_folder.check_folder(model)))
    except ModelError:
        return None


def family(model: str) -> str:
    """The family key of a model folder or single file (models/families.py: "sd1", "sdxl", "flux", "sd3", ...;
    a file's from its header alone), "embedded" for the default model, "unknown" when it cannot be read."""
    from desktop_app.models import families, model_files

    try:
        folder = model_folder.check_folder(model)
        if folder.is_file():
            return model_files.inspect(folder).family
        return families.folder_family(folder, model_folder.read_index(folder))[0]
    except (ModelError, OSError):
        return "unknown"


class FamilyTraits(NamedTuple):
    negative_prompt: bool  # takes a negative prompt
    samplers: tuple[str, ...]  # the samplers to offer (a flow-matching family samples with its own Euler)
    transformer: bool  # a diffusion transformer (no hires fix or refiner here)
    family: str  # its key ("unknown" when the model cannot be read): the LoRA picker asks whether it takes LoRAs


def family_traits(model: str) -> FamilyTraits:
    """What the form needs of the model's family, from one read of its folder (or its file's header)."""
    from desktop_app.engine.request import SAMPLERS
    from desktop_app.models import families

    key = family(model)
    declared = families.FAMILIES.get(key)
    if declared is None:
        return FamilyTraits(True, SAMPLERS, False, key)
    samplers = ("Euler",) if declared.flow_matching else SAMPLERS
    return FamilyTraits(declared.negative_prompt, samplers, declared.denoiser_folder == "transformer", key)


def components_problem(model: str) -> str:
    """For a single transformer file (Flux, SD3 ... .safetensors or .gguf): what is missing to run it, in one line
    (no components folder named for its family, or one that lacks parts); "" for any other model, and for a file
    whose components are complete. Torch-free: the header and the folder's files only."""
    from desktop_app.models import components

    try:
        path = model_folder.resolve(model)
        if path.is_file():
            components.check_model(path)
    except ModelError as exc:
        return " ".join(str(exc).split())
    except OSError as exc:
        return f"Cannot read {model}: {exc.strerror or exc}"
    return ""


def upscaler_files() -> list[Path]:
    """The upscaler files in the user's upscalers folder (<user folder>/models/upscalers)."""
    from desktop_app.models import upscaler_files as files  # no torch in there

    return files.available()


def looks_like_model_folder(path: Path) -> bool:
    return (Path(path) / "model_index.json").is_file()


def display_name(model: str) -> str:
    if model == DEFAULT_MODEL:
        return f"default ({DEFAULT_MODEL_NAME})"
    return model_folder.display_name(model)


def read_attributions() -> str:
    """The "Attributions" section of the embedded model card (or the whole card), as Markdown."""
    card = model_folder.card_path(default_model_dir())
    if card is None:
        return f"Model card not found (looked in {default_model_dir()})."
    try:
        text = card.read_text(encoding="utf-8")
    except OSError as exc:
        return f"Model card not found ({card}: {exc.strerror or exc})."
    match = re.search(r"^##\s+Attributions\s*$(.*?)(?=^##\s|\Z)", text, flags=re.MULTILINE | re.DOTALL)
    return match.group(1).strip() if match else text.strip()

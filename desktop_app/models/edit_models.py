"""Which models edit an image by an instruction ("make it night"), told before any weights load. Torch-free.

A family that can edit names its edit pipeline in ``families.Family.edit``. FLUX.2's own pipelines take reference
images, so a FLUX.2 [klein] model makes and edits alike. Flux.1 and Qwen-Image edit only with their edit releases
(FLUX.1 Kontext, Qwen-Image-Edit), whose weights differ from the text-to-image models' though their tensors look
the same: a diffusers folder says which it is by its pipeline (``families.EDIT_MODELS``); a single transformer file
cannot say, and is taken at its word with the family's edit pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from desktop_app.errors import ModelError, printable
from desktop_app.models import families, model_folder


@dataclass(frozen=True)
class EditModel:
    path: Path
    family: str  # a families.FAMILIES key
    pipeline: str  # the diffusers class that edits with it


def edit_families() -> list[str]:
    """The families this version edits with (their edit pipeline named, the family run here)."""
    return [key for key, family in families.FAMILIES.items() if family.edit and families.is_supported(key)]


def edit_model_names() -> str:
    """The models that edit, for messages: "FLUX.1 Kontext, Qwen-Image-Edit ... or FLUX.2 [klein]"."""
    runs = set(edit_families())
    names = [name for pipeline, name in families.EDIT_MODELS.items()
             if families.family_for_pipeline(pipeline) in runs]
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else "".join(names)


def check_edit_model(path: Path, shown: str | None = None) -> EditModel:
    """The edit pipeline for the model at ``path`` (a checked folder or file), or ModelError in one line naming
    its family and the models that edit. ``shown``: how the message names the model."""
    shown = printable(shown or model_folder.display_name(str(path)))
    pipeline = ""
    if path.is_file():
        from desktop_app.models import model_files

        family = model_files.inspect(path).family or "unknown"
    else:
        index = model_folder.read_index(path)
        pipeline = str(index.get("_class_name", ""))
        family, _ = families.folder_family(path, index)
    return edit_model_of(path, family, pipeline, shown)


def edit_model_of(path: Path, family: str, pipeline: str, shown: str) -> EditModel:
    """``check_edit_model`` for a model whose family and folder pipeline (``""`` for a single file) are known
    (the engine asks with the loaded model's)."""
    declared = families.FAMILIES.get(family)
    if declared is None:
        raise ModelError(f"{shown} is of no model family this app knows; edit with {edit_model_names()}.")
    families.check_supported(family, shown)
    if declared.edit is None:
        raise ModelError(f"{shown} is {declared.name}, which cannot edit an image by an instruction; edit with "
                         f"{edit_model_names()}.")
    if pipeline in families.EDIT_MODELS:
        return EditModel(path, family, pipeline)
    own = declared.edit == declared.text_to_image  # FLUX.2: the family's own pipeline edits
    if pipeline and not own:
        raise ModelError(f"{shown} is {declared.name} ({printable(pipeline, 80)}), not its edit release "
                         f"({families.EDIT_MODELS[declared.edit]}); edit with {edit_model_names()}.")
    return EditModel(path, family, declared.edit)

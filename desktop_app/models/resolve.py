"""What a request's model declares, resolved before any weights load: the one place the command line and the window
ask for a model's own defaults (steps, guidance, sampler, size, its upscaler). Torch-free."""

from __future__ import annotations

import dataclasses

from desktop_app.errors import ModelError
from desktop_app.models import families, model_folder, single_file


def model_defaults(name_or_path: str) -> dict:
    """The defaults a model declares, plus "upscale": "default" when it carries an upscaler. {} when the
    folder cannot be read (the loader reports that properly later)."""
    path = model_folder.resolve(name_or_path)
    if path.is_file():
        return single_file.file_defaults(path)
    try:
        folder = model_folder.check_folder(name_or_path)
        index = model_folder.read_index(folder)
    except ModelError:
        return {}
    result = model_folder.defaults(index)
    family, variant = families.folder_family(folder, index)
    declared = families.FAMILIES.get(family)
    if declared is not None and declared.denoiser_folder == "transformer":  # SD3, Flux...: their published ones
        result = declared.defaults(variant) | result
    if "upscale" not in result and model_folder.upscaler_path(folder) is not None:
        result["upscale"] = "default"
    return result


# the request fields a model may declare defaults for (GenerationRequest's names)
DECLARED_FIELDS = ("width", "height", "steps", "guidance_scale", "sampler", "upscale")


def declared_defaults(model: str, lora_names=()) -> dict:
    """What a request on ``model`` (a path or "default": see ``resolve_names``) with these LoRAs uses where the
    user said nothing: the few-step family's published settings (Turbo, LCM, an LCM-LoRA among the LoRAs), under
    what the model itself declares. The window fills its form with this; the command line fills its request."""
    from desktop_app.models.few_step import few_step_defaults

    return few_step_defaults(model, [str(name) for name in lora_names]) | model_defaults(model)


def resolve_names(request):
    """``request`` with model-library names replaced by the paths they stand for (the model, the refiner).
    A ModelError names an unknown one (with close matches)."""
    from desktop_app.models.model_library import resolve_model

    changes = {}
    for field in ("model", "refiner"):
        value = getattr(request, field, None)
        if isinstance(value, str):
            path = resolve_model(value)
            if path != value:
                changes[field] = str(path)
    return dataclasses.replace(request, **changes) if changes else request


def resolve(request, given=None):
    """The one resolve step the command line and the window share, before the engine sees a request: library
    names become paths, then every field of ``DECLARED_FIELDS`` not in ``given`` (the fields the user set; None:
    all of them) takes what ``declared_defaults`` says for the model and its LoRAs. Works on any dataclass with
    those fields (models/ does not import the engine's request type); the result is built again, so validated."""
    request = resolve_names(request)
    given = set(DECLARED_FIELDS if given is None else given)
    if given >= set(DECLARED_FIELDS):
        return request
    loras = [getattr(lora, "name", lora) for lora in getattr(request, "loras", ()) or ()]
    declared = declared_defaults(request.model, loras)
    changes = {field: declared[field] for field in DECLARED_FIELDS
               if field not in given and field in declared and hasattr(request, field)}
    if "upscale" not in given and "upscale" not in declared and hasattr(request, "upscale"):
        changes["upscale"] = None  # the model has no upscaler of its own: none unless asked
    return dataclasses.replace(request, **changes) if changes else request


def check_family(request) -> None:
    """Before any weights load: a model folder of a family this version does not run is refused naming it
    (ModelError), and a negative prompt for a family that takes none names the field (RequestError)."""
    from desktop_app.errors import RequestError

    try:
        folder = model_folder.check_folder(request.model)
        if folder.is_file():
            family = _file_family(folder)
        else:
            family, _ = families.folder_family(folder, model_folder.read_index(folder))
    except ModelError:
        return  # a missing or damaged model: the loader says so properly
    if folder.is_file() and family in families.SINGLE_FILES:
        from desktop_app.models import components

        components.check_model(folder)  # its text encoders and VAE: ModelError naming what is missing
    if family == "unknown":
        return  # a folder of no known family (a custom UNet, a test model): the loader decides
    families.check_supported(family, f"{model_folder.display_name(request.model)}")
    declared = families.FAMILIES.get(family)
    if declared is not None and not declared.negative_prompt and getattr(request, "negative_prompt", ""):
        raise RequestError("negative_prompt", f"{declared.name} models take no negative prompt: leave it empty")


def _file_family(path) -> str:
    """The family of a single file (its tensors' names, read from the header), "unknown" when none is known."""
    from desktop_app.models import model_files

    return model_files.inspect(path).family or "unknown"

"""Which models the trainer can fine-tune, decided from the files before anything heavy loads (no torch).

The trainer encodes prompts the SD 1.x/2.x way (one text encoder, ``pipe.encode_prompt``) and calls the UNet
without SDXL's added time ids and pooled embeddings, so an SDXL model (two text encoders) would crash after
minutes of loading. It is refused up front, on the command line and in the Fine-tune panel alike.
"""

from __future__ import annotations

from pathlib import Path

from desktop_app.errors import RequestError

SUPPORTED = "Stable Diffusion 1.x and 2.x models and the embedded default model"
REFUSED_FAMILIES = {"sdxl": "SDXL", "sdxl-refiner": "an SDXL refiner", "sd3": "SD3", "flux": "Flux"}
TRAINABLE = frozenset({"sd", "sd1", "sd2", "sd2-v", "embedded"})  # what the trainer's SD 1.x/2.x loop can run


def check_model(model: str) -> str:
    """The family of ``model`` ("default", a diffusers folder or a single .safetensors checkpoint) when the
    trainer supports it; RequestError("model") naming the family and what is supported otherwise, ModelError
    (from the loader's own checks) for a missing or damaged model."""
    from desktop_app.models import model_folder
    from desktop_app.errors import printable

    folder = model_folder.check_folder(model)
    if folder.is_file():
        from desktop_app.models.model_files import inspect

        family = inspect(folder).family  # the content decides; ModelError for unsafe or damaged files
    else:
        family = folder_family(folder, model_folder.read_index(folder))
    if family not in TRAINABLE:
        from desktop_app.models.families import FAMILIES

        known = FAMILIES.get(family)
        what = REFUSED_FAMILIES.get(family) or (known.name if known else f"a {family.partition(':')[2] or family}")
        raise RequestError("model", f"{printable(model_folder.display_name(model), 80)} is {what} model; "
                                    f"fine-tuning supports {SUPPORTED} only")
    return family


def folder_family(folder: Path, index: dict) -> str:
    """"embedded", "sdxl", "sdxl-refiner", "pipeline:<class>" (no UNet: SD3, Flux...) or "sd" from
    model_index.json alone."""
    from desktop_app.models import model_folder

    if model_folder.is_embedded(index):
        return "embedded"
    name = str(index.get("_class_name", ""))
    if "unet" not in index:
        return f"pipeline:{name or 'pipeline'} (no UNet)"
    if "text_encoder_2" in index or "XL" in name:
        return "sdxl-refiner" if not index.get("text_encoder") and "text_encoder_2" in index else "sdxl"
    return "sd"

"""A transformer family's single file (Flux, SD3, Chroma, Sana, Z-Image, Qwen-Image, Flux.2 [klein]) loaded with
its components: the file (``.safetensors``, or ``.gguf`` kept quantized through diffusers' GGUF quantizer) becomes
the family's transformer by diffusers' ``from_single_file`` (which converts the makers' key layout where needed),
and the pipeline is the family's, built from a diffusers folder of the family (models/components.py) with that
transformer in place of the folder's. Offline: every config comes from the components folder or the bundled
published configs (resources/configs/<variant>/transformer/config.json).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from desktop_app.errors import ModelError, printable
from desktop_app.models import components as model_components
from desktop_app.models import families, model_files, single_file


def load(path: Path, info: model_files.FileInfo, dtype: torch.dtype, dtype_kwargs: dict, components_dir=None):
    """(pipeline, components folder) for the transformer file ``path`` (``info``: what model_files found in it),
    in ``dtype`` (``dtype_kwargs``: how this diffusers release is told it). ``components_dir`` overrides the
    folder named for the run or in the library. ModelError, one line, when the components are not named, not of
    the file's family, or incomplete."""
    import diffusers

    family = families.FAMILIES[info.family]
    shown = printable(path.name, 200)
    # 1. the components: a complete diffusers folder of the same family
    folder = components_dir if components_dir is not None else model_components.folder_for(path, family.key)
    if folder is None:
        raise ModelError(families.components_message(family.key, shown))
    folder = model_components.check(family.key, folder, shown)
    # 2. the transformer's config: the folder's own, else the published one of the file's variant
    config_dir = model_components.transformer_config(folder)
    if config_dir is not None and info.variant and _other_inputs(config_dir, info.variant):
        config_dir = None  # a FLUX.1 Fill file with a FLUX.1 [dev] folder's components: its published config
    if config_dir is None:
        if not info.variant:
            raise ModelError(f"{shown} is a {family.name} transformer of no published size, and its components "
                             f"folder {printable(folder, 300)} has no transformer/config.json to say its shape: "
                             f"put that transformer's config.json there.")
        config_dir = single_file.bundled_transformer_config(info.variant)
    # 3. the transformer from the file: GGUF weights stay quantized, computed in the run's dtype
    quantized = path.suffix.lower() == ".gguf"
    extra = {"quantization_config": diffusers.GGUFQuantizationConfig(compute_dtype=dtype)} if quantized else {}
    denoiser = getattr(diffusers, family.denoiser)
    noisy = logging.getLogger("diffusers.models.modeling_utils")  # warns about float32 modules it does not have
    level = noisy.level
    noisy.setLevel(logging.ERROR)
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    try:
        transformer = denoiser.from_single_file(str(path), config=str(config_dir), subfolder="transformer",
                                                local_files_only=True, **dtype_kwargs, **extra)
    except SingleFileComponentError as exc:  # a plain Exception in diffusers
        raise ModelError(f"{shown} holds no {family.name} transformer weights diffusers can read: "
                         f"{printable(exc, 200)}") from None
    finally:
        noisy.setLevel(level)
    # 4. the family's pipeline from the components, with that transformer
    pipeline = getattr(diffusers, family.text_to_image)
    pipe = pipeline.from_pretrained(folder, transformer=transformer, local_files_only=True, use_safetensors=True,
                                    **dtype_kwargs)
    return pipe, folder


def _other_inputs(config_dir: Path, variant: str) -> bool:
    """Whether the components' transformer config takes other input channels than the file's published variant
    (FLUX.1 Fill's 384 against FLUX.1 [dev]'s 64)."""
    import json

    try:
        own = json.loads((config_dir / "transformer" / "config.json").read_text(encoding="utf-8"))
        folder = single_file.bundled_transformer_config(variant)
        published = json.loads((folder / "transformer" / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, ModelError):
        return False
    channels = own.get("in_channels"), published.get("in_channels")
    return all(isinstance(c, int) for c in channels) and channels[0] != channels[1]

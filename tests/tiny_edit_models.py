"""Tiny random edit models (issue 17), built offline from the tiny families' components (tiny_families.py): a
FLUX.1 Kontext folder (FluxKontextPipeline on the tiny Flux.1's modules), a Qwen-Image-Edit folder
(QwenImageEditPipeline on the tiny Qwen-Image's, with a Qwen2-VL processor made in code from its tokenizer) and
FLUX.2 [klein] (its own folder: its pipeline takes reference images). Each is written with ``save_pretrained``, so
its model_index.json names the edit pipeline as a published edit release's does."""

from __future__ import annotations

from pathlib import Path

from tiny_families import build_pipeline

EDIT_FAMILIES = {"flux-kontext": "flux", "qwen-image-edit": "qwen-image", "flux2-klein": "flux2-klein"}


def qwen_processor(tokenizer):
    """Qwen2-VL's processor (its image and video processors at their defaults) around the tiny tokenizer."""
    from transformers import Qwen2VLImageProcessor, Qwen2VLProcessor, Qwen2VLVideoProcessor

    return Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(), tokenizer=tokenizer,
                            video_processor=Qwen2VLVideoProcessor())


def build_edit_pipeline(name: str, seed: int = 0):
    """The tiny random edit pipeline ``name`` (an EDIT_FAMILIES key), in memory."""
    import diffusers

    base = build_pipeline(EDIT_FAMILIES[name], seed)
    if name == "flux-kontext":
        return diffusers.FluxKontextPipeline(**base.components)
    if name == "qwen-image-edit":
        return diffusers.QwenImageEditPipeline(**base.components, processor=qwen_processor(base.tokenizer))
    return base


def build_edit_model(name: str, out: Path, seed: int = 0) -> Path:
    """Write the tiny edit model ``name`` as a diffusers folder at ``out`` and return ``out``."""
    build_edit_pipeline(name, seed).save_pretrained(out)
    return Path(out)

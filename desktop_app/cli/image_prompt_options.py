"""``generate``'s image prompt options (issue 17): ``--image-prompt IMAGE[:WEIGHT]`` and ``--ip-adapter
NAME_OR_PATH``, read into the request's fields, and the adapter checked against the model before torch loads."""

from __future__ import annotations

import argparse
from pathlib import Path

from desktop_app.cli.errors import BadInput

FLAGS = {"image_prompt": "--image-prompt", "image_prompt_weight": "--image-prompt WEIGHT",
         "ip_adapter": "--ip-adapter"}


def add_options(gen) -> None:
    from desktop_app.engine.request import DEFAULT_IMAGE_PROMPT_WEIGHT, MAX_IMAGE_PROMPT_WEIGHT

    gen.add_argument("--image-prompt", metavar="IMAGE[:WEIGHT]",
                     help="an image prompt (Stable Diffusion 1.x, SDXL and Flux.1): IMAGE steers the picture "
                          "through --ip-adapter; WEIGHT from 0 (the plain picture) to "
                          f"{MAX_IMAGE_PROMPT_WEIGHT:g} (default {DEFAULT_IMAGE_PROMPT_WEIGHT:g})")
    gen.add_argument("--ip-adapter", metavar="NAME_OR_PATH",
                     help="with --image-prompt: the IP-Adapter, laid out as h94/IP-Adapter: an "
                          "ip-adapter*.safetensors file with its image encoder (a CLIPVisionModelWithProjection "
                          "folder) as image_encoder/ beside it or in a folder next to its folder (h94's "
                          "models/image_encoder for sdxl_models/*vit-h*); or a folder holding one such file and "
                          "image_encoder/; or a name in the models folder's ip-adapter/. For Flux.1: XLabs' "
                          "ip_adapter.safetensors (XLabs-AI/flux-ip-adapter) with CLIP ViT-L/14 "
                          "(openai/clip-vit-large-patch14) as image_encoder/ beside it. Only .safetensors load")


def values(args: argparse.Namespace) -> dict:
    """The request's image prompt fields from the options given ({} for none); the adapter's name becomes its
    path. BadInput (one line) for a weight that is not a number or an adapter that is not there."""
    text, adapter = getattr(args, "image_prompt", None), getattr(args, "ip_adapter", None)
    if text is None and adapter is None:
        return {}
    if text is None:
        raise BadInput("--ip-adapter needs --image-prompt (the image the IP-Adapter reads)")
    if adapter is None:
        raise BadInput("--image-prompt needs --ip-adapter (an ip-adapter*.safetensors file, or a folder holding "
                       "one, or XLabs' Flux ip_adapter.safetensors, and its image_encoder/)")
    image, weight = split_weight(text)
    from desktop_app.errors import ModelError
    from desktop_app.models.ip_adapter_files import resolve_adapter

    try:
        found = {"image_prompt": image, "ip_adapter": str(resolve_adapter(adapter))}
    except ModelError as exc:
        raise BadInput(f"--ip-adapter: {exc}") from None
    return found if weight is None else {**found, "image_prompt_weight": weight}


def split_weight(text: str) -> tuple[str, float | None]:
    """(image path, weight or None) from "IMAGE[:WEIGHT]"; a path that exists as given keeps its colons."""
    path = Path(text).expanduser()
    image, _, tail = str(text).rpartition(":")
    if path.exists() or not image:
        return str(path), None
    try:
        weight = float(tail)
    except ValueError:
        return str(path), None  # no weight: the request names the missing file
    return str(Path(image).expanduser()), weight


def check(request) -> None:
    """The request's IP-Adapter read and checked against its model, torch-free (BadInput, one line)."""
    if not request.image_prompt:
        return
    from desktop_app.errors import ModelError
    from desktop_app.models.ip_adapter_files import check_image_prompt
    from desktop_app.models.model_folder import display_name

    try:
        check_image_prompt(request.ip_adapter, request.model, display_name(request.model))
    except ModelError as exc:
        raise BadInput(f"--ip-adapter: {exc}") from None

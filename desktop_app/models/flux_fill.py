"""FLUX.1 Fill: Black Forest Labs' inpainting and outpainting model of Flux.1 (torch-free).

Its transformer is Flux.1 [dev]'s with 384 input channels instead of 64: the noisy latents (16 channels packed 2x2
into 64), the latents of the start image with the area to repaint blanked (64 more), and the mask at the VAE's
pixel resolution folded into the tokens (8 x 8 pixels x 2 x 2 = 256); it still predicts 64. diffusers runs it with
FluxFillPipeline, which needs a start image and a mask: Black Forest Labs publish it for inpainting and
outpainting only (its model card and their ``flux`` repository's ``fill`` command), and neither they nor diffusers
use it to draw from text alone, so the engine refuses text to image and plain image to image on it (a full mask
would blank the whole start image: text to image by a model not made for it, with none of the start image left).

Recognised by the pipeline a folder names, or by the transformer's channels (a folder or a single file):
models/families.py's ``flux-fill`` variant.
"""

from __future__ import annotations

PIPELINE = "FluxFillPipeline"
VARIANT = "flux-fill"
NAME = "FLUX.1 Fill"
IN_CHANNELS, OUT_CHANNELS = 384, 64


def is_fill(index: dict | None = None, transformer=None) -> bool:
    """Whether a folder (its model_index.json ``index``) or a transformer (its config: a dict or diffusers'
    FrozenDict) is FLUX.1 Fill's."""
    if index and index.get("_class_name") == PIPELINE:
        return True
    if not transformer:
        return False
    return transformer.get("in_channels") == IN_CHANNELS and transformer.get("out_channels") == OUT_CHANNELS


def needs_a_mask(job: str) -> str:
    """The one line refusing ``job`` ("text to image", "image to image") on a Fill model."""
    return (f"{NAME} models only inpaint and outpaint, so they need a start image and a mask (--init with --mask "
            "or --outpaint; in the window, a start image with a painted mask or Extend): for "
            f"{job} use a FLUX.1 [dev] or [schnell] model")

"""The bundled full-size transformer configs (resources/configs/<variant>/transformer/config.json) are the
published models: each, read the way ``from_single_file(config=...)`` reads it, builds on the meta device (no
memory, no weights) into a network of the size its makers publish.

The size counted is what a checkpoint of the network holds: every tensor of its state dict, parameters and stored
buffers. That is the makers' own count: Stability AI's SD3 checkpoints store the positional-embedding table
(``pos_embed``, 147456 x 1536 values in 3.5 Medium), which their figures include and diffusers keeps as a buffer.
A figure is met within 2 %; where the makers publish only a whole number of billions ("2B", "4B", "20B"), within
that number's rounding (half a billion).
"""

from __future__ import annotations

import pytest

from desktop_app.models import families, single_file

# variant -> (published size in billions of parameters, where it is published)
PUBLISHED = {
    "flux-dev": (12, "FLUX.1 [dev] model card, black-forest-labs/FLUX.1-dev: a 12 billion parameter rectified "
                     "flow transformer"),
    "flux-schnell": (12, "FLUX.1 [schnell] model card, black-forest-labs/FLUX.1-schnell: 12 billion parameters"),
    "flux-fill": (12, "FLUX.1 Fill [dev] model card, black-forest-labs/FLUX.1-Fill-dev: a 12 billion parameter "
                      "rectified flow transformer"),
    "sd3-medium": (2, "Stability AI, 'Stable Diffusion 3 Medium' (June 2024): a 2 billion parameter SD3 model"),
    "sd3.5-large": (8.1, "Stability AI, 'Introducing Stable Diffusion 3.5' (Oct 2024): Large, 8.1 billion "
                         "parameters"),
    "sd3.5-medium": (2.5, "the same announcement: Medium (MMDiT-X), 2.5 billion parameters"),
    "flux2-klein-4b": (4, "Black Forest Labs, FLUX.2 [klein] (Jan 2026): the 4B model (Apache 2.0)"),
    "flux2-klein-9b": (9, "the same release: the 9B model"),
    "flux2-dev": (32, "FLUX.2 [dev] model card, black-forest-labs/FLUX.2-dev: a 32 billion parameter rectified "
                      "flow transformer"),
    "chroma": (8.9, "Chroma1-HD model card, lodestones/Chroma1-HD: an 8.9B parameter text-to-image model"),
    "z-image-turbo": (6.15, "Z-Image Team, 'Z-Image: An Efficient Image Generation Foundation Model with "
                            "Single-Stream Diffusion Transformer' (arXiv 2511.22699): a 6B-parameter S3-DiT in "
                            "the abstract, 6.15B in the architecture the paper describes"),
    "qwen-image": (20, "Qwen Team, 'Qwen-Image Technical Report' (arXiv 2508.02324) and model card: a 20B MMDiT"),
    "sana-1600m": (1.6, "Xie et al., 'SANA: Efficient High-Resolution Image Synthesis with Linear Diffusion "
                        "Transformers' (arXiv 2410.10629): Sana-1.6B"),
    "sana-600m": (0.6, "the same paper: Sana-0.6B"),
    "sana-sprint-1600m": (1.6, "Chen et al., 'SANA-Sprint: One-Step Diffusion with Continuous-Time Consistency "
                               "Distillation' (arXiv 2503.09641): SANA-Sprint 1.6B"),
    "sana-sprint-600m": (0.6, "the same paper: SANA-Sprint 0.6B"),
    "pixart-sigma-xl": (0.6, "Chen et al., 'PixArt-Σ: Weak-to-Strong Training of Diffusion Transformer for 4K "
                             "Text-to-Image Generation' (arXiv 2403.04692): a 0.6B-parameter DiT"),
}


def test_every_bundled_variant_has_a_published_figure():
    bundled = {v.key for f in families.FAMILIES.values() for v in f.variants}
    assert bundled == set(PUBLISHED)


def _within(count: float, figure: float) -> bool:
    tolerance = 0.02 * figure
    if figure == int(figure) and figure >= 1:  # published as whole billions: its rounding
        tolerance = max(tolerance, 0.5)
    return abs(count - figure) <= tolerance


@pytest.mark.parametrize("variant", sorted(PUBLISHED))
def test_the_bundled_config_builds_the_published_model(variant):
    import diffusers
    import torch

    family = next(f for f in families.FAMILIES.values() if f.variant(variant))
    folder = single_file.bundled_transformer_config(variant)
    cls = getattr(diffusers, family.denoiser)
    config = cls.load_config(str(folder), subfolder="transformer", local_files_only=True)
    with torch.device("meta"):
        model = cls.from_config(config)
    assert type(model).__name__ == family.denoiser
    count = sum(tensor.numel() for tensor in model.state_dict().values()) / 1e9
    figure, source = PUBLISHED[variant]
    assert _within(count, figure), f"{variant}: {count:.3f}B, but {source} says {figure}B"
    # and the config is the one the file recognition picks for this width
    assert family.variant(variant).width in (None, _width(config))


def _width(config: dict) -> int:
    return config.get("dim") or config["num_attention_heads"] * config["attention_head_dim"]  # dim: Z-Image


def test_the_tolerance_rule():
    assert _within(8.146, 8.1) and not _within(8.3, 8.1)
    assert _within(3.876, 4) and not _within(3.4, 4)
    assert _within(0.611, 0.6) and not _within(0.59 * 1.1, 0.6)

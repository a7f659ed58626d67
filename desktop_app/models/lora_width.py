"""Which transformer family a diffusers-layout LoRA of the joint attention blocks was made for, from its width.
Torch-free: model_files (the library, the window's LoRA list) and engine/lora_families (before a LoRA loads) both
use it.

Flux.1's and SD3's joint blocks have the same layer names in diffusers' layout
(``transformer.transformer_blocks.N.attn.to_q``, ``.add_k_proj`` ...): a LoRA on them alone cannot be told apart
by its names. The width its down-projections read can: 3072 is Flux.1's hidden size, 1536 SD3 Medium's and
SD 3.5 Medium's, 2432 SD 3.5 Large's (the widths of the published variants in models/families.py).
"""

from __future__ import annotations

import re

from desktop_app.models.families import FAMILIES

# the down-projection (lora_A) of a joint block's attention input, in diffusers' layout
JOINT_ATTENTION_A = re.compile(r"transformer_blocks\.\d+\.attn\.(?:to_[qkv]|add_[qkv]_proj)\.lora_A\.weight$")
_FAMILIES = ("flux", "sd3")  # the families whose joint blocks share these names


def joint_attention_family(shapes: dict[str, list[int]]) -> str:
    """"flux" or "sd3" when the joint attention's input width is one that only that family's published models
    have, else "unknown" (no such layer, a width of no published model, or widths of both)."""
    widths = {shape[1] for key, shape in shapes.items() if JOINT_ATTENTION_A.search(key) and len(shape) == 2}
    found = {family for family in _FAMILIES if any(v.width in widths for v in FAMILIES[family].variants)}
    return found.pop() if len(found) == 1 else "unknown"


# the families whose transformers name their joint attention so (FLUX.2's double blocks and Qwen-Image's too)
SHARING = ("flux", "sd3", "qwen-image", "flux2-klein", "flux2")


def joint_attention_families(shapes: dict[str, list[int]]) -> set[str]:
    """Every family of SHARING with a published model of the joint attention's input width (3072: Flux.1,
    Qwen-Image and FLUX.2 [klein] 4B alike); empty when there is no such layer or no published model has it."""
    widths = {shape[1] for key, shape in shapes.items() if JOINT_ATTENTION_A.search(key) and len(shape) == 2}
    return {family for family in SHARING if any(v.width in widths for v in FAMILIES[family].variants)}

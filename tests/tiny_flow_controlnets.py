"""Tiny random ControlNets for the flow-matching families (issue 17): a FluxControlNetModel and an
SD3ControlNetModel from small configs of the same widths as tests/tiny_families.py's tiny Flux and SD3
transformers, saved with save_pretrained. Their zero-initialised output layers are filled with random weights (a
fresh ControlNet adds nothing, which would make every test of its effect pass for the wrong reason)."""

from __future__ import annotations

from pathlib import Path

import torch

# the tiny transformers' widths (tiny_families.build_flux, build_sd3)
FLUX = dict(patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
            num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32, axes_dims_rope=[4, 4, 8],
            guidance_embeds=True)
SD3 = dict(sample_size=4, patch_size=2, in_channels=16, out_channels=16, num_layers=1, attention_head_dim=8,
           num_attention_heads=4, caption_projection_dim=32, joint_attention_dim=64, pooled_projection_dim=64,
           pos_embed_max_size=16, extra_conditioning_channels=0)


def _randomised(net, layers, out: Path, seed: int) -> Path:
    torch.manual_seed(seed + 1000)
    with torch.no_grad():
        for layer in layers:
            for parameter in layer.parameters():
                torch.nn.init.normal_(parameter, std=0.5)
    net.save_pretrained(out)
    return Path(out)


def build_flux_controlnet(out: Path, seed: int = 0, **changes) -> Path:
    from diffusers import FluxControlNetModel

    torch.manual_seed(seed)
    net = FluxControlNetModel(**(FLUX | changes))
    return _randomised(net, [*net.controlnet_blocks, *net.controlnet_single_blocks, net.controlnet_x_embedder],
                       out, seed)


def build_sd3_controlnet(out: Path, seed: int = 0, **changes) -> Path:
    from diffusers import SD3ControlNetModel

    torch.manual_seed(seed)
    net = SD3ControlNetModel(**(SD3 | changes))
    return _randomised(net, [*net.controlnet_blocks, net.pos_embed_input], out, seed)


def build_sd3_two_blocks(out: Path, seed: int = 0) -> Path:
    """tiny_families' SD3 with a second joint block: SD3's transformer adds a ControlNet's output to every block
    but the last (which updates no text tokens), so the one-block tiny SD3 would take none."""
    from diffusers import SD3Transformer2DModel
    from tiny_families import build_pipeline

    pipe = build_pipeline("sd3", seed)
    widths = {key: value for key, value in SD3.items() if key != "extra_conditioning_channels"}
    torch.manual_seed(seed)
    pipe.transformer = SD3Transformer2DModel(**(widths | {"num_layers": 2}))
    pipe.register_modules(transformer=pipe.transformer)
    pipe.save_pretrained(out)
    return Path(out)


def build_flow_with_controlnets(root: Path) -> dict:
    """Tiny Flux and SD3 folders and a ControlNet for each: {"flux": folder, "sd3": folder, "flux-control": folder,
    "sd3-control": folder}."""
    from tiny_families import build_family

    root = Path(root)
    return {"flux": build_family("flux", root / "tiny-flux"), "sd3": build_sd3_two_blocks(root / "tiny-sd3"),
            "flux-control": build_flux_controlnet(root / "flux-canny", 3),
            "sd3-control": build_sd3_controlnet(root / "sd3-canny", 4)}

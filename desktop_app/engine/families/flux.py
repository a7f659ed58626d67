"""Flux.1 (and Chroma, built on it): CLIP + T5 text encoders, 16 latent channels packed 2x2 into 64-wide tokens
(so sizes are multiples of 16, and a preview unpacks the tokens first), guidance distilled into the model (Flux
takes no negative prompt; Chroma does)."""

from __future__ import annotations

import torch

from desktop_app.engine.families.flow import FlowFamily

# rows: the 16 latent channels; columns: R, G, B (ComfyUI comfy/latent_formats.py, class Flux)
FLUX_FACTORS = [[-0.0346, 0.0244, 0.0681], [0.0034, 0.0210, 0.0687], [0.0275, -0.0668, -0.0433],
                [-0.0174, 0.0160, 0.0617], [0.0859, 0.0721, 0.0329], [0.0004, 0.0383, 0.0115],
                [0.0405, 0.0861, 0.0915], [-0.0236, -0.0185, -0.0259], [-0.0245, 0.0250, 0.1180],
                [0.1008, 0.0755, -0.0421], [-0.0515, 0.0201, 0.0011], [0.0428, -0.0012, -0.0036],
                [0.0817, 0.0765, 0.0749], [-0.1264, -0.0522, -0.1103], [-0.0280, -0.0881, -0.0499],
                [-0.1262, -0.0982, -0.0778]]
FLUX_BIAS = [-0.0329, -0.0718, -0.0851]


class FluxFamily(FlowFamily):
    linear_preview = (FLUX_FACTORS, FLUX_BIAS)

    def size_multiple(self, pipe) -> int:
        return 2 * int(getattr(pipe, "vae_scale_factor", 8))  # 2x2 latent patches per token

    def preview_latents(self, pipe, x0: torch.Tensor, width: int, height: int) -> torch.Tensor:
        if x0.ndim != 3:  # already (batch, channels, height, width)
            return x0
        return pipe._unpack_latents(x0, height, width, pipe.vae_scale_factor)

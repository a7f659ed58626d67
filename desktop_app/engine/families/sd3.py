"""Stable Diffusion 3 and 3.5: three text encoders (two CLIPs and T5), 16 latent channels, a negative prompt."""

from __future__ import annotations

from desktop_app.engine.families.flow import FlowFamily

# rows: the 16 latent channels; columns: R, G, B (ComfyUI comfy/latent_formats.py, class SD3)
SD3_FACTORS = [[-0.0922, -0.0175, 0.0749], [0.0311, 0.0633, 0.0954], [0.1994, 0.0927, 0.0458],
               [0.0856, 0.0339, 0.0902], [0.0587, 0.0272, -0.0496], [-0.0006, 0.1104, 0.0309],
               [0.0978, 0.0306, 0.0427], [-0.0042, 0.1038, 0.1358], [-0.0194, 0.0020, 0.0669],
               [-0.0488, 0.0130, -0.0268], [0.0922, 0.0988, 0.0951], [-0.0278, 0.0524, -0.0542],
               [0.0332, 0.0456, 0.0895], [-0.0069, -0.0030, -0.0810], [-0.0596, -0.0465, -0.0293],
               [-0.1448, -0.1463, -0.1189]]
SD3_BIAS = [0.2394, 0.2135, 0.1925]


class Sd3Family(FlowFamily):
    linear_preview = (SD3_FACTORS, SD3_BIAS)

    def __init__(self):
        super().__init__("sd3", negative_prompt=True)

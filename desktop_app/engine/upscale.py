"""Super-resolution models through spandrel, which recognises the architecture from the state dict alone.

Only .safetensors files are read (never pickles). Upscaling is untiled for now: fine for the small images of
the embedded model; big images will want overlapping tiles.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import ModelError


def load_upscaler(path: Path | str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """A spandrel ImageModelDescriptor on ``device``, in eval mode."""
    import safetensors
    import safetensors.torch
    import spandrel

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"Upscaler not found: {path} is not a file.")
    if path.suffix.lower() != ".safetensors":
        raise ModelError(f"Upscaler {path} is not a .safetensors file; only .safetensors upscalers "
                         "are loaded.")
    try:
        state = safetensors.torch.load_file(str(path))
    except (safetensors.SafetensorError, OSError, ValueError) as exc:
        raise ModelError(f"Upscaler {path} is damaged or not a safetensors file ({exc}).") from None
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise ModelError(f"Upscaler {path}: spandrel does not recognise this architecture.") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ModelError(f"Upscaler {path} is not an image-to-image model.")
    supported = {torch.float16: getattr(descriptor, "supports_half", False),
                 torch.bfloat16: getattr(descriptor, "supports_bfloat16", False)}
    if not supported.get(dtype, True):
        dtype = torch.float32
    descriptor.to(device).eval()
    if dtype != torch.float32:
        descriptor.to(dtype)
    return descriptor


@torch.inference_mode()
def upscale_image(descriptor, image: Image.Image) -> Image.Image:
    """Upscale one PIL image (RGB; alpha is dropped) by the model's scale."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    x = torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).to(descriptor.device, descriptor.dtype)
    y = descriptor(x).float().clamp(0, 1)
    out = (y[0].permute(1, 2, 0).cpu().numpy() * 255.0).round().astype(np.uint8)
    return Image.fromarray(out)

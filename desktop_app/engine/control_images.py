"""A ControlNet's image (issue 17): the file read, fitted to the request's size as a start image is ("crop":
scaled to cover, centred, the overhang cut), then made into what the ControlNet reads by a preprocessor that
needs no downloaded weights: "none" (the image as it is: an edge map, a depth map, a pose drawn elsewhere) or
"canny" (OpenCV's Canny edges, white on black, at the request's size). Torch-free: Pillow, numpy and OpenCV.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from desktop_app.errors import RequestError, one_line, printable

# AUTOMATIC1111's ControlNet extension's defaults for Canny: hysteresis thresholds on the gradient magnitude
CANNY_LOW, CANNY_HIGH = 100, 200


def read_control_image(path: str) -> tuple[Image.Image, str]:
    """The image at ``path`` (its pixels read now; turned as its EXIF orientation says) and the file's sha256.
    RequestError naming "controls" when it cannot be read."""
    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise RequestError("controls", f"{printable(path)} cannot be read as an image ({one_line(exc, 120)})") \
            from None
    return image, hashlib.sha256(data).hexdigest()


def canny(image: Image.Image, low: int = CANNY_LOW, high: int = CANNY_HIGH) -> Image.Image:
    """OpenCV's Canny edges of ``image`` (grey levels), white on black, as an RGB image."""
    import cv2

    grey = np.asarray(image.convert("L"))
    edges = cv2.Canny(grey, low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1), "RGB")


PREPROCESSORS = {"none": lambda image: image, "canny": canny}


def control_image(path: str, preprocessor: str, size: tuple[int, int]) -> tuple[Image.Image, str]:
    """The control image a ControlNet gets for the file at ``path``: RGB at ``size`` (width, height), through
    ``preprocessor``; and the file's sha256 for the recipe."""
    source, sha256 = read_control_image(path)
    if transparent(source):  # a drawn layer: transparent reads as black (no edge, no line)
        black = Image.new("RGBA", source.size, (0, 0, 0, 255))
        source = Image.alpha_composite(black, source.convert("RGBA"))
    rgb = source.convert("RGB")
    fitted = rgb.copy() if rgb.size == tuple(size) else ImageOps.fit(rgb, size, Image.Resampling.LANCZOS)
    return PREPROCESSORS[preprocessor](fitted).convert("RGB"), sha256


def transparent(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info)

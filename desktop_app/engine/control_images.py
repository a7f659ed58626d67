"""A ControlNet's image (issue 17): the file read, fitted to the request's size as a start image is ("crop":
scaled to cover, centred, the overhang cut; image_inputs.py's reading and fitting), then made into what the
ControlNet reads by a preprocessor that needs no downloaded weights: "none" (the image as it is: an edge map, a
depth map, a pose drawn elsewhere), "canny" (OpenCV's Canny edges, white on black, at the request's size) or
"lineart" (dark strokes as white lines on black, the line-art ControlNets' input: A1111's "lineart_standard").
Pillow, numpy and OpenCV.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from desktop_app.engine.image_inputs import fit, flatten, read_image

# AUTOMATIC1111's ControlNet extension's defaults for Canny: hysteresis thresholds on the gradient magnitude
CANNY_LOW, CANNY_HIGH = 100, 200
# its "lineart_standard": how far a pixel is darker than its surroundings (a Gaussian blur of this radius), the
# median stroke's darkness (at least this floor) drawn at level 127
LINEART_SIGMA, LINEART_FLOOR = 6.0, 16.0


def canny(image: Image.Image, low: int = CANNY_LOW, high: int = CANNY_HIGH) -> Image.Image:
    """OpenCV's Canny edges of ``image`` (grey levels), white on black, as an RGB image."""
    import cv2

    grey = np.asarray(image.convert("L"))
    edges = cv2.Canny(grey, low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1), "RGB")


def lineart(image: Image.Image) -> Image.Image:
    """The strokes of ``image`` as white lines on black (A1111's "lineart_standard", no model): how much darker
    each pixel is than its blurred surroundings in its least-dark channel, scaled so that the median stroke is
    level 127."""
    import cv2

    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)
    blurred = cv2.GaussianBlur(pixels, (0, 0), LINEART_SIGMA)
    darker = np.min(blurred - pixels, axis=2).clip(0, 255)
    strokes = darker[darker > 8]
    darker *= 127 / max(LINEART_FLOOR, float(np.median(strokes)) if strokes.size else 0.0)
    lines = darker.clip(0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([lines] * 3, axis=-1), "RGB")


PREPROCESSORS = {"none": lambda image: image, "canny": canny, "lineart": lineart}


def control_image(path: str, preprocessor: str, size: tuple[int, int]) -> tuple[Image.Image, str]:
    """The control image a ControlNet gets for the file at ``path``: RGB at ``size`` (width, height), through
    ``preprocessor``; and the file's sha256 for the recipe. A drawn layer's transparency reads as black (no
    edge, no line). RequestError naming "controls" when the file cannot be read."""
    source, sha256 = read_image(path, "controls")
    fitted = fit(flatten(source).convert("RGB"), size, "crop", Image.Resampling.LANCZOS)
    return PREPROCESSORS[preprocessor](fitted).convert("RGB"), sha256

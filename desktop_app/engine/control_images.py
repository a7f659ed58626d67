"""A ControlNet's image (issue 17): the file read, fitted to the request's size as a start image is ("crop":
scaled to cover, centred, the overhang cut; image_inputs.py's reading and fitting), then made into what the
ControlNet reads by a preprocessor that needs no downloaded weights: "none" (the image as it is: an edge map, a
depth map, a pose drawn elsewhere), "canny" (OpenCV's Canny edges, white on black, at the request's size) or
"lineart" (dark strokes as white lines on black, the line-art ControlNets' input: A1111's "lineart_standard");
or by one that reads a model the user has (MODEL_PREPROCESSORS): "depth" (a depth map, near white, from the
depth-estimation folder in ``<user folder>/models/preprocessors/depth/``) and "pose" (the 17 COCO keypoints of
the ViTPose folder in ``.../preprocessors/pose/``, drawn OpenPose-style on black): engine/control_models.py.
Pillow, numpy and OpenCV when imported; torch and transformers only when a depth map or a pose is made.
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


def depth(image: Image.Image) -> Image.Image:
    """The depth map of ``image`` by the user's depth model (engine/control_models.py), near white, RGB."""
    from desktop_app.engine.control_models import depth as estimate  # torch and transformers

    return estimate(image)


def pose(image: Image.Image) -> Image.Image:
    """The skeleton of the person in ``image`` by the user's pose model (engine/control_models.py), RGB."""
    from desktop_app.engine.control_models import pose as estimate  # torch and transformers

    return estimate(image)


PREPROCESSORS = {"none": lambda image: image, "canny": canny, "lineart": lineart, "depth": depth, "pose": pose}
MODEL_PREPROCESSORS = ("depth", "pose")  # they load a model (torch): the window shows no preview of them


def control_image(path: str, preprocessor: str, size: tuple[int, int]) -> tuple[Image.Image, str]:
    """The control image a ControlNet gets for the file at ``path``: RGB at ``size`` (width, height), through
    ``preprocessor``; and the file's sha256 for the recipe. A drawn layer's transparency reads as black (no
    edge, no line). RequestError naming "controls" when the file cannot be read, or when a model preprocessor's
    model is missing or refused."""
    source, sha256 = read_image(path, "controls")
    fitted = fit(flatten(source).convert("RGB"), size, "crop", Image.Resampling.LANCZOS)
    return PREPROCESSORS[preprocessor](fitted).convert("RGB"), sha256

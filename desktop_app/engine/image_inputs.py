"""The images a request starts from (issue 17): the start image and the mask, read, fitted to the request's size,
the mask feathered, and their sha256 for the recipe. Plain Pillow and numpy (torch only for the feather's
dilation), no pipeline: image_job.py runs them.

The mask is white where the model repaints. Its feather (``mask_blur`` pixels) reaches outward from the painted
area: every painted pixel is repainted in full, the blend fades over the next ``mask_blur`` pixels, and beyond
them the result keeps the start image's pixels exactly (``paste_back``).

Outpainting is inpainting on a larger picture: the start image placed in it, the new area filled from its edges
and masked (``outpaint_inputs``).
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageFilter, ImageOps

from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import RequestError, one_line, printable


@dataclass(frozen=True)
class ImageInputs:
    """The start image at the request's size (RGB), the mask as the user gave it at that size ("L", None when
    there is none), its feathered version (float 0..1, height x width), what was done to fit them, and the
    files' sha256."""

    image: Image.Image
    mask: Image.Image | None
    feather: np.ndarray | None
    fitted: str  # for the run's notices, e.g. "start image 300x200 cropped to 64x64"
    image_sha256: str
    mask_sha256: str | None
    outpaint: bool = False  # the mask is the new area of an extended picture (made here, not the user's)

    @property
    def record(self) -> dict:
        """The recipe's record of the inputs."""
        return {k: v for k, v in (("init_image_sha256", self.image_sha256), ("mask_sha256", self.mask_sha256))
                if v is not None}


def load_inputs(request: GenerationRequest) -> ImageInputs | None:
    """The request's start image and mask, fitted to width x height (None: a text-to-image request).
    RequestError (naming init_image or mask) for a file that cannot be read as an image."""
    if request.init_image is None:
        return None
    if request.outpaint is not None:
        return outpaint_inputs(request)
    size = (request.width, request.height)
    source, image_sha256 = read_image(request.init_image, "init_image")
    image = fit(source.convert("RGB"), size, request.init_fit, Image.Resampling.LANCZOS)
    fitted = describe_fit(source.size, size, request.init_fit)
    mask = feather = mask_sha256 = None
    if request.mask is not None:
        given, mask_sha256 = read_image(request.mask, "mask")
        mask = ImageOps.grayscale(flatten(given))
        if mask.size != source.size:  # a mask drawn at another size covers the same picture
            fitted += f"; mask {mask.size[0]}x{mask.size[1]} scaled to the start image's {source.size[0]}x" \
                      f"{source.size[1]}"
            mask = mask.resize(source.size, Image.Resampling.BILINEAR)
        mask = fit(mask, size, request.init_fit, Image.Resampling.BILINEAR)
        feather = feathered(mask, request.mask_blur)
        if not feather.any():
            raise RequestError("mask", f"{printable(request.mask)} is black everywhere: nothing to repaint "
                                       "(white marks what to repaint)")
    return ImageInputs(image, mask, feather, fitted, image_sha256, mask_sha256)


def outpaint_inputs(request: GenerationRequest) -> ImageInputs:
    """Outpainting: the start image fitted to its area (``request.outpaint_area()``) on a picture of width x
    height, the new area filled from the start image's edges (``edge_fill``) and masked white, the mask feathered
    ``mask_blur`` pixels into the start image so that the seam is blended; beyond that the start image's pixels
    are kept exactly, as in inpainting."""
    left, top, width, height = request.outpaint_area()
    source, image_sha256 = read_image(request.init_image, "init_image")
    start = fit(source.convert("RGB"), (width, height), request.init_fit, Image.Resampling.LANCZOS)
    fitted = describe_fit(source.size, (width, height), request.init_fit)
    # the fill's noise follows the start image, not the request's seed: a random seed is drawn after this, and
    # the recipe (which records the drawn seed) must give the same fill again
    picture = edge_fill(start, request.outpaint, int(image_sha256[:8], 16))
    mask = Image.new("L", picture.size, 255)
    mask.paste(0, (left, top, left + width, top + height))
    sides = ",".join(str(side) for side in request.outpaint)
    fitted += f", extended by {sides} (left,top,right,bottom) to {picture.size[0]}x{picture.size[1]}"
    return ImageInputs(picture, mask, feathered(mask, request.mask_blur), fitted, image_sha256, None, True)


def edge_fill(start: Image.Image, outpaint: tuple[int, int, int, int], seed: int = 0) -> Image.Image:
    """``start`` with ``outpaint`` pixels added (left, top, right, bottom), the new ones its edge pixels carried
    outward, blurred more the farther they are from the edge and sprinkled with a little seeded noise: a start
    that an image-to-image strength below 1 continues in colour without copying streaks. The start image's own
    pixels are unchanged."""
    left, top, right, bottom = outpaint
    pixels = np.asarray(start, dtype=np.float32)
    padded = np.pad(pixels, ((top, bottom), (left, right), (0, 0)), mode="edge")
    stretched = Image.fromarray(padded.round().astype(np.uint8), "RGB")
    radius = max(2.0, max(outpaint) / 4)
    blurred = np.asarray(stretched.filter(ImageFilter.GaussianBlur(radius)), dtype=np.float32)
    height, width = padded.shape[:2]
    ys, xs = np.mgrid[0:height, 0:width]
    # how far outside the start image each pixel is (0 inside), as a share of the widest border
    away = np.maximum.reduce([left - xs, xs - (left + start.width - 1), top - ys, ys - (top + start.height - 1),
                              np.zeros_like(xs)]).astype(np.float32)
    share = np.clip(away / max(1, max(outpaint)), 0, 1)[..., None]
    noise = np.random.default_rng(seed).normal(0, 12, padded.shape).astype(np.float32)
    filled = padded * (1 - share) + blurred * share + noise * (share > 0)
    filled[top:top + start.height, left:left + start.width] = pixels
    return Image.fromarray(filled.round().clip(0, 255).astype(np.uint8), "RGB")


def read_image(path: str, field: str) -> tuple[Image.Image, str]:
    """The image at ``path``, its pixels read now (a truncated file fails here, not mid-run), turned as its
    EXIF orientation says, and the file's sha256 (of the bytes that were read)."""
    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise RequestError(field, f"{printable(path)} cannot be read as an image ({one_line(exc, 120)})") from None
    return image, hashlib.sha256(data).hexdigest()


def flatten(image: Image.Image) -> Image.Image:
    """A mask with transparency: transparent counts as black (keep), as a painted layer reads."""
    if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(black, rgba).convert("RGB")
    return image


def fit(image: Image.Image, size: tuple[int, int], how: str, resample) -> Image.Image:
    """``image`` at ``size``: "crop" scales it to cover the size and cuts the overhang equally from both sides;
    "stretch" scales each side on its own."""
    if image.size == tuple(size):
        return image.copy()
    if how == "stretch":
        return image.resize(size, resample)
    return ImageOps.fit(image, size, resample, centering=(0.5, 0.5))


def describe_fit(source: tuple[int, int], size: tuple[int, int], how: str) -> str:
    width, height = size
    if tuple(source) == tuple(size):
        return f"start image {width}x{height}"
    verb = "cropped to" if how == "crop" and source[0] * height != source[1] * width else "resized to"
    return f"start image {source[0]}x{source[1]} {verb} {width}x{height}"


def feathered(mask: Image.Image, blur: int) -> np.ndarray:
    """The mask as floats 0..1 with a linear fade over ``blur`` pixels outward (Chebyshev distance): at
    distance d (1..blur) from the painted area its value is (blur + 1 - d) / (blur + 1), beyond it 0."""
    values = torch.from_numpy(np.asarray(mask, dtype=np.float32) / 255.0)[None, None]
    total, grown = values.clone(), values
    for _ in range(blur):
        grown = torch.nn.functional.max_pool2d(grown, 3, stride=1, padding=1)
        total += grown
    return (total / (blur + 1))[0, 0].numpy()


def model_mask(feather: np.ndarray, cell: int) -> Image.Image:
    """The mask the pipeline gets: every ``cell`` x ``cell`` block (one latent, or one packed token) that the
    feathered mask touches is white, so that the model re-draws all of the area that is blended, however
    the pipeline scales the mask down."""
    height, width = feather.shape
    touched = torch.from_numpy((feather > 0).astype(np.float32))[None, None]
    blocks = torch.nn.functional.max_pool2d(touched, cell, stride=cell, ceil_mode=True)
    full = torch.nn.functional.interpolate(blocks, scale_factor=cell, mode="nearest")[0, 0, :height, :width]
    return Image.fromarray((full.numpy() * 255).astype(np.uint8), "L")


def paste_back(result: Image.Image, start: Image.Image, feather: np.ndarray) -> Image.Image:
    """``result`` where the feathered mask is 1, ``start`` where it is 0 (its pixels exactly), blended between."""
    if result.size != start.size:  # a family that drew at its own resolution bin and resized: not pixel-exact
        result = result.resize(start.size, Image.Resampling.LANCZOS)
    alpha = feather[..., None].astype(np.float32)
    new = np.asarray(result.convert("RGB"), dtype=np.float32)
    old = np.asarray(start, dtype=np.float32)
    blended = np.rint(new * alpha + old * (1 - alpha)).clip(0, 255).astype(np.uint8)
    return Image.fromarray(blended, "RGB")

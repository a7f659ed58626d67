"""Super-resolution models through spandrel, which recognises the architecture from the state dict alone.

Loading: the file's content decides (see upscaler_files). A safetensors file is read with safetensors; a
PyTorch ``.pth`` with ``torch.load(weights_only=True)``, which refuses anything but tensors and plain
containers. Only the state dict (unwrapped from ``params_ema``, ``params``, ``state_dict`` ...) reaches
spandrel's ``load_from_state_dict``: spandrel's own file loader and ``torch.jit.load`` are never the gate.

Upscaling: the image is cut into overlapping tiles (``tile`` input pixels a side, ``overlap`` shared with each
neighbour) and each tile goes through the model alone, so memory stays bounded by the tile size whatever the
image size. Where tiles overlap, their outputs are blended with feathered weights: zero over the quarter of
the overlap nearest a tile's inner edge (where the model saw zero padding instead of the neighbours), a
linear crossfade over the middle half. Finished rows are quantised into the output array band by band, so
only one row of tiles is ever held in float.

Image kinds: RGB as is; RGBA and LA have their colour and their alpha upscaled separately (the alpha goes
through the model as a grey image, for edges as sharp as the colour's) and put back together; greyscale goes
through as grey RGB and comes back greyscale; palette images become RGB(A); 16-bit greyscale ("I;16", "I")
keeps 16 bits. A smaller ``scale`` than the model's own shrinks the model's result with Lanczos; a larger
one is refused (repeated passes multiply the artefacts and the time: use a model of that scale).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from desktop_app.models import upscaler_files
from desktop_app.errors import CancelledError, ModelError, RequestError
from desktop_app.engine.request import DEFAULT_TILE, MAX_TILE, MIN_TILE, check_tile  # noqa: F401 - used by callers

MAX_OUTPUT_PIXELS = 64_000_000  # the model's own output, before any shrink to a smaller scale
DEFAULT_OVERLAP = 32
_UNWRAP_KEYS = ("params_ema", "params-ema", "params", "state_dict", "model_state_dict", "model", "net")


# ---- loading -----------------------------------------------------------------------------------------


def read_state_dict(path: Path | str) -> dict[str, torch.Tensor]:
    """The tensors in an upscaler file, or a ModelError that says why not (see the module docstring)."""
    path = Path(path)
    kind = upscaler_files.check_readable(path)
    if kind == upscaler_files.SAFETENSORS:
        import safetensors
        import safetensors.torch

        try:
            state = safetensors.torch.load_file(str(path))
        except (safetensors.SafetensorError, OSError, ValueError) as exc:
            raise ModelError(f"Upscaler {path.name} is damaged or not a safetensors file ({exc}).") from None
    else:
        import pickle

        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"Upscaler {path.name} is a pickle that holds more than weights, so it is not "
                             f"loaded (pickles can run code; torch.load with weights_only refused it: "
                             f"{first[:160]}). Convert it to .safetensors with a tool you trust.") from None
        except (RuntimeError, EOFError, OSError, ValueError, KeyError) as exc:
            raise ModelError(f"Upscaler {path.name} is damaged or truncated ({type(exc).__name__}: "
                             f"{' '.join(str(exc).split())[:160]}).") from None
    return _unwrap(state, path)


def _unwrap(state, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):  # {"params_ema": {...}}, {"model": {"state_dict": {...}}} ...
        if not isinstance(state, dict):
            break
        inner = next((state[k] for k in _UNWRAP_KEYS if isinstance(state.get(k), dict)), None)
        if inner is None and len(state) == 1 and isinstance(next(iter(state.values())), dict):
            inner = next(iter(state.values()))
        if inner is None:
            break
        state = inner
    if not isinstance(state, dict):
        raise ModelError(f"Upscaler {path.name} does not hold a state dict (it holds a "
                         f"{type(state).__name__}).")
    tensors = {str(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ModelError(f"Upscaler {path.name} holds no weights.")
    for prefix in ("module.", "netG."):
        if all(k.startswith(prefix) for k in tensors):
            tensors = {k[len(prefix):]: v for k, v in tensors.items()}
    return tensors


def load_upscaler(path: Path | str, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """A spandrel ImageModelDescriptor on ``device``, in eval mode (float32 when the model does not support
    ``dtype``). ModelError for a file that is not an upscaler spandrel knows."""
    import spandrel

    path = Path(path)
    state = read_state_dict(path)
    try:
        descriptor = spandrel.ModelLoader().load_from_state_dict(state)
    except spandrel.UnsupportedModelError:
        raise ModelError(f"{path.name} is not an upscaler spandrel knows: no supported architecture "
                         "matches its weights.") from None
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise ModelError(f"{path.name} looks like an upscaler, but its weights do not fit the architecture "
                         f"({type(exc).__name__}: {' '.join(str(exc).split())[:160]}).") from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise ModelError(f"{path.name} is a {descriptor.architecture.name} model, not an image upscaler.")
    if descriptor.purpose == "FaceSR":
        raise ModelError(f"{path.name} is a face restoration model ({descriptor.architecture.name}), "
                         "not an upscaler for whole images.")
    channels = (descriptor.input_channels, descriptor.output_channels)
    if channels not in ((3, 3), (1, 1)):
        raise ModelError(f"{path.name} takes {channels[0]} channels and gives {channels[1]}; only colour "
                         "(3 to 3) and greyscale (1 to 1) upscalers are supported.")
    supported = {torch.float16: getattr(descriptor, "supports_half", False),
                 torch.bfloat16: getattr(descriptor, "supports_bfloat16", False)}
    if not supported.get(dtype, True):
        dtype = torch.float32
    descriptor.to(device).eval()
    if dtype != torch.float32:
        descriptor.to(dtype)
    return descriptor


def describe_upscaler(descriptor, choice: str, path: Path) -> dict:
    """The recipe's record of an upscaler: name, file, short sha256, architecture and native scale."""
    return upscaler_files.describe(choice, path) | {
        "architecture": descriptor.architecture.name, "scale": int(descriptor.scale)}


# ---- images in -----------------------------------------------------------------------------------------


def open_image(path: Path | str, field: str = "input") -> Image.Image:
    """An image file, decoded and turned upright (EXIF orientation). RequestError(field) for a file that is
    missing, empty, not an image, damaged, or too large to decode safely."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise RequestError(field, f"{path} is not a file")
    if path.stat().st_size == 0:
        raise RequestError(field, f"{path.name} is an empty file, not an image")
    try:
        with Image.open(path) as opened:
            width, height = opened.size
            if width * height > MAX_OUTPUT_PIXELS:
                raise RequestError(field, f"{path.name} is {width}x{height} ({width * height / 1e6:.0f} "
                                          f"megapixels); images up to {MAX_OUTPUT_PIXELS // 1_000_000} "
                                          "megapixels can be upscaled")
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except Image.DecompressionBombError:
        raise RequestError(field, f"{path.name} is too large to open safely (over "
                                  f"{Image.MAX_IMAGE_PIXELS * 2 / 1e6:.0f} megapixels)") from None
    except Image.UnidentifiedImageError:
        raise RequestError(field, f"{path.name} is not an image this app can read (PNG, JPEG, WebP, "
                                  "BMP, TIFF, GIF ...)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise RequestError(field, f"{path.name} is a damaged or truncated image "
                                  f"({' '.join(str(exc).split())[:120]})") from None
    return image


@dataclass
class _Planes:
    """An image as integer arrays the model can take: colour (H, W, 3 or 1) and alpha (H, W, 1) or None."""

    colour: np.ndarray
    alpha: np.ndarray | None
    maxval: float  # 255 or 65535
    mode: str  # the output mode: "RGB", "RGBA", "L", "LA" or "I;16"


def _planes(image: Image.Image) -> _Planes:
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        values = np.asarray(image).astype(np.int64)
        grey = np.clip(values, 0, 65535).astype(np.uint16)
        return _Planes(grey[..., None], None, 65535.0, "I;16")
    if mode == "F":
        image = image.convert("L")
    elif mode == "1":
        image = image.convert("L")
    elif mode == "P":
        has_alpha = "transparency" in image.info or image.palette.mode == "RGBA"
        image = image.convert("RGBA" if has_alpha else "RGB")
    elif mode in ("PA", "RGBa", "RGBX", "CMYK", "YCbCr", "LAB", "HSV", "La"):
        image = image.convert("LA" if mode == "La" else "RGBA" if mode in ("PA", "RGBa") else "RGB")
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        image = image.convert("RGB")
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[..., None]
    if image.mode in ("RGBA", "LA"):
        colour, alpha = array[..., :-1], array[..., -1:]
        return _Planes(colour, alpha, 255.0, image.mode)
    return _Planes(array, None, 255.0, image.mode)


def _to_image(arrays: list[np.ndarray], mode: str) -> Image.Image:
    array = np.concatenate(arrays, axis=-1) if len(arrays) > 1 else arrays[0]
    if array.shape[-1] == 1:
        array = array[..., 0]
    image = Image.fromarray(np.ascontiguousarray(array))  # uint16 -> I;16, 1/2/3/4 channels -> L/LA/RGB/RGBA
    assert image.mode == mode, (image.mode, mode)
    return image


# ---- tiles -----------------------------------------------------------------------------------------------


def tile_layout(size: int, tile: int, overlap: int) -> tuple[int, list[int]]:
    """(tile length, tile origins) along one side: as few tiles of at most ``tile`` as cover ``size`` with
    at least ``overlap`` shared between neighbours, shrunk to just cover it and spaced evenly (a 1024-pixel
    side in tiles of 512 takes three of 363, not three of 512)."""
    if tile <= 0 or size <= tile:
        return size, [0]
    count = math.ceil((size - overlap) / (tile - overlap))
    length = min(tile, math.ceil((size + (count - 1) * overlap) / count))
    stride = (size - length) / (count - 1)
    return length, [round(k * stride) for k in range(count)]


def tile_starts(size: int, tile: int, overlap: int) -> list[int]:
    return tile_layout(size, tile, overlap)[1]


def _ramp(length: int, fade: int, start_edge: bool, end_edge: bool) -> np.ndarray:
    """1-D weights for one side of a tile: 1 inside; at an inner edge 0 for fade/4, then a linear rise over
    fade/2 (two neighbours' ramps sum to 1 where they cross)."""
    weights = np.ones(length, dtype=np.float32)
    if fade <= 0:
        return weights
    margin, rise = fade / 4.0, max(fade / 2.0, 1.0)
    distance = np.arange(length, dtype=np.float32) + 0.5
    if start_edge:
        weights = np.minimum(weights, np.clip((distance - margin) / rise, 0.0, 1.0))
    if end_edge:
        weights = np.minimum(weights, np.clip((distance[::-1] - margin) / rise, 0.0, 1.0))
    return weights


def _tile_size(tile: int | None, descriptor) -> int:
    from spandrel import ModelTiling

    if not tile or descriptor.tiling == ModelTiling.INTERNAL:
        return 0  # untiled: the whole image at once
    return int(tile)


def count_tiles(size: tuple[int, int], tile: int | None, overlap: int = DEFAULT_OVERLAP) -> int:
    width, height = size
    if not tile:
        return 1
    return len(tile_starts(width, tile, min(overlap, tile // 4))) * \
        len(tile_starts(height, tile, min(overlap, tile // 4)))


def _passes(planes: _Planes, model_channels: int) -> list[tuple[str, int]]:
    """The model passes an image needs: (plane, channel) pairs; channel -1 means all channels at once."""
    colour_channels = planes.colour.shape[-1]
    passes = []
    if model_channels == 3 or colour_channels == 1:
        passes.append(("colour", -1))
    else:  # a greyscale model on a colour image: one pass per channel
        passes += [("colour", c) for c in range(colour_channels)]
    if planes.alpha is not None and planes.alpha.min() != planes.alpha.max():
        passes.append(("alpha", -1))
    return passes


@torch.inference_mode()
def _run_tiled(descriptor, source: np.ndarray, maxval: float, tile: int, overlap: int,
               after_tile: Callable[[], None]) -> np.ndarray:
    """source (H, W, C) with C 1 or 3 (integers up to maxval) through the model, tile by tile; the result
    (H*s, W*s, C) in source's dtype."""
    scale = int(descriptor.scale)
    height, width, channels = source.shape
    model_channels = int(descriptor.input_channels)
    overlap = min(overlap, tile // 4) if tile else 0
    (tile_h, ys), (tile_w, xs) = tile_layout(height, tile, overlap), tile_layout(width, tile, overlap)
    out = np.empty((height * scale, width * scale, channels), dtype=source.dtype)
    band_top = 0  # the first output row the accumulators hold
    acc = np.zeros((0, width * scale, channels), dtype=np.float32)
    weight = np.zeros((0, width * scale), dtype=np.float32)
    for row, y0 in enumerate(ys):
        y1 = y0 + tile_h
        grow = y1 * scale - band_top - acc.shape[0]
        if grow > 0:
            acc = np.concatenate([acc, np.zeros((grow, *acc.shape[1:]), np.float32)])
            weight = np.concatenate([weight, np.zeros((grow, weight.shape[1]), np.float32)])
        ramp_y = _ramp((y1 - y0) * scale, overlap * scale, y0 > 0, y1 < height)
        for x0 in xs:
            x1 = x0 + tile_w
            piece = torch.from_numpy(np.ascontiguousarray(source[y0:y1, x0:x1]).astype(np.float32) / maxval)
            piece = piece.permute(2, 0, 1).unsqueeze(0)
            if channels == 1 and model_channels == 3:
                piece = piece.expand(1, 3, -1, -1)
            result = descriptor(piece.to(descriptor.device, descriptor.dtype)).float().clamp_(0, 1)
            if channels == 1 and model_channels == 3:
                result = result.mean(dim=1, keepdim=True)
            result = result[0].permute(1, 2, 0).cpu().numpy()
            ramp_x = _ramp((x1 - x0) * scale, overlap * scale, x0 > 0, x1 < width)
            mask = ramp_y[:, None] * ramp_x[None, :]
            rows = slice(y0 * scale - band_top, y1 * scale - band_top)
            cols = slice(x0 * scale, x1 * scale)
            acc[rows, cols] += result * mask[..., None]
            weight[rows, cols] += mask
            after_tile()
        # rows above the next row of tiles get nothing more: quantise them into the output and let them go
        done = ys[row + 1] * scale if row + 1 < len(ys) else height * scale
        count = done - band_top
        values = acc[:count] / np.maximum(weight[:count], 1e-8)[..., None]
        out[band_top:done] = np.rint(np.clip(values, 0.0, 1.0) * maxval).astype(source.dtype)
        acc, weight = acc[count:].copy(), weight[count:].copy()
        band_top = done
    return out


def check_scale(descriptor, scale: float | None, field: str = "scale") -> float:
    """The scale to use: the model's own when None; from 1 up to the model's own otherwise."""
    native = int(descriptor.scale)
    if scale is None:
        return float(native)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 1 <= scale <= native:
        raise RequestError(field, f"this upscaler enlarges {native}x: choose a scale from 1 to {native} "
                                  f"(below {native}, its result is shrunk with Lanczos), got {scale!r}")
    return float(scale)


def output_size(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def check_size(descriptor, size: tuple[int, int], field: str = "input") -> None:
    native = int(descriptor.scale)
    pixels = size[0] * native * size[1] * native
    if pixels > MAX_OUTPUT_PIXELS:
        raise RequestError(field, f"the image is {size[0]}x{size[1]}; upscaled {native}x by the model it "
                                  f"would be {pixels / 1e6:.0f} megapixels, and the limit is "
                                  f"{MAX_OUTPUT_PIXELS // 1_000_000} megapixels (the model works at its own "
                                  "scale before any shrink): use a smaller image")


def plan(descriptor, image: Image.Image, tile: int | None = DEFAULT_TILE) -> int:
    """How many model calls (tiles, over all passes) upscaling ``image`` takes."""
    planes = _planes(image)
    tile = _tile_size(tile, descriptor)
    return len(_passes(planes, int(descriptor.input_channels))) * count_tiles(image.size, tile)


def upscale_image(descriptor, image: Image.Image, scale: float | None = None, tile: int | None = DEFAULT_TILE,
                  progress: Callable[[int, int], None] | None = None,
                  cancel: threading.Event | None = None, overlap: int = DEFAULT_OVERLAP) -> Image.Image:
    """Upscale one PIL image by ``scale`` (the model's own when None), in tiles of ``tile`` input pixels
    (0 or None: untiled). ``progress(done, total)`` after each tile; ``cancel`` is checked before each tile
    and raises CancelledError. The result keeps the image's kind: RGB, RGBA, L, LA or 16-bit grey (palette
    images become RGB or RGBA)."""
    scale = check_scale(descriptor, scale)
    check_size(descriptor, image.size)
    tile = _tile_size(check_tile(tile), descriptor)
    planes = _planes(image)
    passes = _passes(planes, int(descriptor.input_channels))
    total = len(passes) * count_tiles(image.size, tile, overlap)
    done = [0]

    def after_tile() -> None:
        done[0] += 1
        if progress is not None:
            progress(done[0], total)
        if cancel is not None and cancel.is_set() and done[0] < total:
            raise CancelledError("Upscaling was cancelled.")

    if cancel is not None and cancel.is_set():
        raise CancelledError("Upscaling was cancelled.")
    results: dict[str, list[np.ndarray]] = {"colour": [], "alpha": []}
    for plane, channel in passes:
        source = getattr(planes, plane)
        if channel >= 0:
            source = source[..., channel:channel + 1]
        results[plane].append(_run_tiled(descriptor, source, planes.maxval, tile, overlap, after_tile))
    arrays = results["colour"]
    if planes.alpha is not None:
        if results["alpha"]:
            arrays = arrays + results["alpha"]
        else:  # a constant alpha stays constant
            native = int(descriptor.scale)
            shape = (image.height * native, image.width * native, 1)
            arrays = arrays + [np.full(shape, planes.alpha.flat[0], dtype=planes.alpha.dtype)]
    result = _to_image(arrays, planes.mode)
    target = output_size(image.size, scale)
    if result.size != target:
        result = result.resize(target, Image.Resampling.LANCZOS)
    return result


def lanczos(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """The plain resize used when no upscaler model is chosen (hires fix without a model)."""
    return image.resize(size, Image.Resampling.LANCZOS)

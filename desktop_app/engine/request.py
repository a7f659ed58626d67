"""The one frozen request that describes a generation, validated when it is built."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

from desktop_app.errors import RequestError
from desktop_app.resources import DEFAULT_MODEL

MAX_PROMPT_CHARS = 2000
MIN_SIZE, MAX_SIZE = 8, 2048
MAX_SEED = 2**32 - 1
SAMPLERS = ("Euler", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "DDIM", "UniPC", "Heun", "DPM++ SDE",
            "DPM++ 2M SDE Karras", "LCM")
MAX_HIRES_SCALE, MAX_HIRES_SIZE = 4.0, 4096
DEFAULT_TILE = 512  # upscaler input pixels a side (ComfyUI's default too): ~2048x2048 output pixels per tile at 4x
MIN_TILE, MAX_TILE = 64, 4096
DEFAULT_STRENGTH, DEFAULT_MASK_BLUR, MAX_MASK_BLUR = 0.6, 4, 256
INIT_FITS = ("crop", "stretch")  # crop: scaled to cover, centred, the rest cut; stretch: scaled to the size


@dataclass(frozen=True)
class LoraChoice:
    name: str
    weight: float = 1.0


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    negative_prompt: str = ""
    width: int = 64
    height: int = 64
    steps: int = 20
    guidance_scale: float = 5.0
    sampler: str = "DPM++ 2M"
    seed: int | None = None  # None: a random seed is drawn and reported
    batch_size: int = 1
    model: str = DEFAULT_MODEL
    loras: tuple[LoraChoice, ...] = field(default_factory=tuple)
    upscale: str | None = None  # None: no upscale; a name or path of an upscaler model
    hires_scale: float | None = None  # None: no hires fix; else enlarge this much and refine by img2img
    hires_strength: float = 0.5  # the share of the schedule the hires img2img pass runs (0: enlarge only)
    refiner: str | None = None  # None: no refiner; else an SDXL refiner (a name, folder or single file)
    refiner_switch: float = 0.8  # the share of the schedule the SDXL base runs before the refiner takes over
    preview: bool = True
    # image to image and inpainting (issue 17): the start image (a file), how much of the schedule re-draws it
    # (0 < strength <= 1), an optional mask (a file; white = repaint) and its feather in pixels
    init_image: str | None = None
    strength: float = DEFAULT_STRENGTH
    mask: str | None = None
    mask_blur: int = DEFAULT_MASK_BLUR
    init_fit: str = "crop"  # how a start image of another shape becomes width x height: INIT_FITS

    def __post_init__(self) -> None:
        _check(isinstance(self.prompt, str), "prompt", "must be text")
        _check(len(self.prompt) <= MAX_PROMPT_CHARS, "prompt",
               f"is {len(self.prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
        _check(_encodes(self.prompt), "prompt", "holds bytes that are not valid UTF-8 text; retype it")
        _check(isinstance(self.negative_prompt, str), "negative_prompt", "must be text")
        _check(_encodes(self.negative_prompt), "negative_prompt",
               "holds bytes that are not valid UTF-8 text; retype it")
        _check(len(self.negative_prompt) <= MAX_PROMPT_CHARS, "negative_prompt",
               f"is {len(self.negative_prompt)} characters; the limit is {MAX_PROMPT_CHARS}")
        for name in ("width", "height"):
            value = getattr(self, name)
            _check(_is_int(value) and MIN_SIZE <= value <= MAX_SIZE and value % 8 == 0, name,
                   f"must be a multiple of 8 from {MIN_SIZE} to {MAX_SIZE}, got {value!r}")
        _check(_is_int(self.steps) and 1 <= self.steps <= 150, "steps",
               f"must be a whole number from 1 to 150, got {self.steps!r}")
        _check(_is_number(self.guidance_scale) and 0 <= self.guidance_scale <= 30, "guidance_scale",
               f"must be a number from 0 to 30, got {self.guidance_scale!r}")
        _check(self.sampler in SAMPLERS, "sampler",
               f"unknown sampler {self.sampler!r}; choose one of: {', '.join(SAMPLERS)}")
        _check(self.seed is None or (_is_int(self.seed) and 0 <= self.seed <= MAX_SEED), "seed",
               f"must be a whole number from 0 to {MAX_SEED} (or empty for random), got {self.seed!r}")
        _check(_is_int(self.batch_size) and 1 <= self.batch_size <= 16, "batch_size",
               f"must be a whole number from 1 to 16, got {self.batch_size!r}")
        _check(isinstance(self.model, str) and self.model.strip() != "", "model", "must name a model")
        _check(isinstance(self.loras, tuple) and all(
            isinstance(lora, LoraChoice) and isinstance(lora.name, str) and lora.name.strip() != ""
            and _is_number(lora.weight) and -10 <= lora.weight <= 10 for lora in self.loras), "loras",
               "must be a list of LoraChoice(name, weight), each a name and a weight from -10 to 10")
        _check(self.upscale is None or (isinstance(self.upscale, str) and self.upscale.strip() != ""),
               "upscale", "must name an upscaler (\"default\", a file or a name), or be empty for none")
        hires_ok = _is_number(self.hires_scale) and 1 < self.hires_scale <= MAX_HIRES_SCALE
        _check(self.hires_scale is None or hires_ok, "hires_scale",
               f"must be a number above 1 and up to {MAX_HIRES_SCALE:g} (or empty for no hires fix), got "
               f"{self.hires_scale!r}")
        _check(_is_number(self.hires_strength) and 0 <= self.hires_strength <= 1, "hires_strength",
               f"must be a number from 0 to 1, got {self.hires_strength!r}")
        _check(self.refiner is None or (isinstance(self.refiner, str) and self.refiner.strip() != ""),
               "refiner", "must name an SDXL refiner model (a name, folder or file), or be empty for none")
        _check(_is_number(self.refiner_switch) and 0 < self.refiner_switch < 1, "refiner_switch",
               f"must be a number between 0 and 1 (the share of the steps the base model runs, e.g. 0.8), got "
               f"{self.refiner_switch!r}")
        if self.hires_scale is not None:
            largest = round(max(self.width, self.height) * self.hires_scale)
            _check(largest <= MAX_HIRES_SIZE, "hires_scale",
                   f"{self.width}x{self.height} times {self.hires_scale:g} is {largest} pixels on a side; the "
                   f"hires fix goes up to {MAX_HIRES_SIZE}")
        self._check_image_inputs()

    def _check_image_inputs(self) -> None:
        """The start image, strength, mask and feather: types and ranges, and that the files open as images
        (their headers only: the engine reads the pixels)."""
        from pathlib import PurePath

        for name in ("init_image", "mask"):
            if isinstance(getattr(self, name), PurePath):
                object.__setattr__(self, name, str(getattr(self, name)))
        _check(_is_number(self.strength) and 0 < self.strength <= 1, "strength",
               f"must be a number above 0 and up to 1 (the share of the steps that re-draw the start image), "
               f"got {self.strength!r}")
        _check(_is_int(self.mask_blur) and 0 <= self.mask_blur <= MAX_MASK_BLUR, "mask_blur",
               f"must be a whole number of pixels from 0 to {MAX_MASK_BLUR}, got {self.mask_blur!r}")
        _check(self.init_fit in INIT_FITS, "init_fit",
               f"must be one of: {', '.join(INIT_FITS)}, got {self.init_fit!r}")
        _check(self.mask is None or self.init_image is not None, "mask",
               "needs a start image (init_image): the mask says which part of it to repaint")
        if self.init_image is None:
            return
        _check(int(self.steps * self.strength) >= 1, "strength",
               f"{self.strength:g} of {self.steps} steps is no step at all: raise the strength or the steps")
        _check(self.refiner is None, "refiner", "the SDXL refiner does not take a start image yet: leave it "
                                                "empty for image to image and inpainting")
        for name in ("init_image", "mask"):
            value = getattr(self, name)
            if value is not None:
                _check(isinstance(value, str) and value.strip() != "", name, "must be an image file")
                _check_image_file(name, value)

    def with_seed(self, seed: int) -> GenerationRequest:
        return replace_request(self, seed=seed)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["loras"] = [asdict(lora) for lora in self.loras]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> GenerationRequest:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        try:
            values["loras"] = tuple(
                LoraChoice(**lora) if isinstance(lora, dict) else LoraChoice(*lora)
                for lora in values.get("loras", ()) or ()
            )
        except TypeError:
            raise RequestError("loras", "must be a list of [name, weight] pairs") from None
        return cls(**values)


@dataclass(frozen=True)
class UpscaleRequest:
    """One image to enlarge with an upscaler model, validated when built (``Engine.upscale`` runs it).

    ``source`` is an image file path or a PIL image (the window passes what it shows). ``model`` is
    "default" (the upscaler of ``model_folder``, else of the embedded model), an upscaler file, or a name in
    the upscalers folder. ``scale`` None means the model's own (checked against the model once it is loaded);
    ``tile`` 0 means untiled."""

    source: object
    model: str = "default"
    scale: float | None = None
    tile: int = DEFAULT_TILE
    model_folder: str | None = None

    def __post_init__(self) -> None:
        from pathlib import PurePath

        source_ok = isinstance(self.source, (str, PurePath)) or hasattr(self.source, "getpixel")
        _check(source_ok and str(self.source).strip() != "", "input",
               "must be an image file (or an image), got nothing" if not str(self.source).strip()
               else f"must be an image file or an image, got {type(self.source).__name__}")
        _check(isinstance(self.model, str) and self.model.strip() != "", "upscale",
               "must name an upscaler (\"default\", a file or a name)")
        _check(self.scale is None or (_is_number(self.scale) and 1 <= self.scale <= 16), "scale",
               f"must be a number from 1 to the upscaler's own scale (or empty for its own), got {self.scale!r}")
        object.__setattr__(self, "tile", check_tile(self.tile))
        if isinstance(self.model_folder, PurePath):
            object.__setattr__(self, "model_folder", str(self.model_folder))
        _check(self.model_folder is None or (isinstance(self.model_folder, str) and self.model_folder.strip()),
               "model_folder", "must name a model folder, or be empty")


def check_tile(tile: int | None, field: str = "tile") -> int:
    """0 (or None) for untiled, else a tile side from MIN_TILE to MAX_TILE input pixels."""
    if tile is None or tile == 0:
        return 0
    if not _is_int(tile) or not MIN_TILE <= tile <= MAX_TILE:
        raise RequestError(field, f"must be 0 (no tiles) or a whole number of pixels from {MIN_TILE} to "
                                  f"{MAX_TILE}, got {tile!r}")
    return tile


def replace_request(request: GenerationRequest, **changes) -> GenerationRequest:
    from dataclasses import replace

    return replace(request, **changes)


def _check_image_file(field_name: str, path: str) -> None:
    """``path`` is a file that Pillow opens as an image (its header: cheap)."""
    import os

    from PIL import Image, UnidentifiedImageError

    from desktop_app.errors import printable

    shown = printable(path, 200)
    _check(os.path.isfile(path), field_name, f"{shown}: no such image file")
    try:
        with Image.open(path) as image:
            width, height = image.size
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise RequestError(field_name, f"{shown} is not an image Pillow can read ({type(exc).__name__})") from None
    _check(width > 0 and height > 0, field_name, f"{shown} is an empty image")


def _encodes(text) -> bool:
    """False for text holding lone surrogates (bytes a terminal could not decode, kept by Python's
    surrogateescape): the tokenizer and the PNG recipe could not take them."""
    if not isinstance(text, str):
        return True  # the type check says so
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _check(ok: bool, field_name: str, message: str) -> None:
    if not ok:
        raise RequestError(field_name, message)

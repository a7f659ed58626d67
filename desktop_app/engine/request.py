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
MAX_OUTPAINT = 1024  # pixels added on one side by outpainting
OUTPAINT_STRENGTH = 1.0  # outpainting's default strength: the new area is drawn from noise
# what makes a ControlNet's image from the one given (control_images.py)
CONTROL_PREPROCESSORS = ("none", "canny", "lineart", "depth", "pose")
MAX_CONTROLS, MAX_CONTROL_WEIGHT = 4, 2.0
DEFAULT_IMAGE_PROMPT_WEIGHT, MAX_IMAGE_PROMPT_WEIGHT = 0.6, 2.0  # h94/IP-Adapter suggests ~0.5 beside a prompt


@dataclass(frozen=True)
class LoraChoice:
    name: str
    weight: float = 1.0


@dataclass(frozen=True)
class ControlChoice:
    """One ControlNet of a request (issue 17): the model (a name or a folder), its image (a file), how strongly
    it steers (0 to MAX_CONTROL_WEIGHT), the share of the steps it steers (start < end, both 0..1) and what
    makes its control image from the file ("none": the file as it is; "canny": its edges; "lineart": its
    dark strokes; "depth": its depth map by the user's depth model, in models/preprocessors/depth/; "pose":
    the skeleton found by the user's ViTPose model, in models/preprocessors/pose/)."""

    model: str
    image: str
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0
    preprocessor: str = "none"

    def __post_init__(self) -> None:
        from pathlib import PurePath

        for name in ("model", "image"):
            if isinstance(getattr(self, name), PurePath):
                object.__setattr__(self, name, str(getattr(self, name)))
        _check(isinstance(self.model, str) and self.model.strip() != "", "controls",
               "each ControlNet must name a model (a name or a folder)")
        _check(isinstance(self.image, str) and self.image.strip() != "", "controls",
               "each ControlNet needs its image (a file)")
        _check(_is_number(self.weight) and 0 <= self.weight <= MAX_CONTROL_WEIGHT, "controls",
               f"a ControlNet's weight must be a number from 0 to {MAX_CONTROL_WEIGHT:g}, got {self.weight!r}")
        _check(_is_number(self.start) and _is_number(self.end) and 0 <= self.start < self.end <= 1, "controls",
               f"a ControlNet's start and end must be shares of the steps with 0 <= start < end <= 1, got "
               f"{self.start!r} and {self.end!r}")
        _check(self.preprocessor in CONTROL_PREPROCESSORS, "controls",
               f"unknown ControlNet preprocessor {self.preprocessor!r}; choose one of: "
               f"{', '.join(CONTROL_PREPROCESSORS)}")


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
    # outpainting: pixels added (left, top, right, bottom); width x height is then the whole extended picture and
    # the start image is fitted into it less these borders (None: no outpainting)
    outpaint: tuple[int, int, int, int] | None = None
    # ControlNets (issue 17): each a model, an image, a weight and the share of the steps it steers
    controls: tuple[ControlChoice, ...] = field(default_factory=tuple)
    # an image prompt (issue 17): an image file steering the picture through an IP-Adapter (a file or folder,
    # models/ip_adapter_files.py) with a weight from 0 (the plain picture) to MAX_IMAGE_PROMPT_WEIGHT
    image_prompt: str | None = None
    image_prompt_weight: float = DEFAULT_IMAGE_PROMPT_WEIGHT
    ip_adapter: str | None = None

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
        self._check_controls()
        self._check_image_prompt()

    def _check_image_prompt(self) -> None:
        """An image file and an IP-Adapter named together (one without the other is refused), and a weight
        from 0 to MAX_IMAGE_PROMPT_WEIGHT."""
        from pathlib import PurePath

        for name in ("image_prompt", "ip_adapter"):
            if isinstance(getattr(self, name), PurePath):
                object.__setattr__(self, name, str(getattr(self, name)))
        _check(_is_number(self.image_prompt_weight) and 0 <= self.image_prompt_weight <= MAX_IMAGE_PROMPT_WEIGHT,
               "image_prompt_weight", f"must be a number from 0 to {MAX_IMAGE_PROMPT_WEIGHT:g}, got "
                                      f"{self.image_prompt_weight!r}")
        _check(self.ip_adapter is None or (isinstance(self.ip_adapter, str) and self.ip_adapter.strip() != ""),
               "ip_adapter", "must name an IP-Adapter (a .safetensors file, or a folder holding one and its "
                             "image_encoder/), or be empty for none")
        _check(self.image_prompt is None or (isinstance(self.image_prompt, str) and self.image_prompt.strip()),
               "image_prompt", "must be an image file, or empty for none")
        if self.image_prompt is None:
            _check(self.ip_adapter is None, "ip_adapter", "needs an image prompt (image_prompt): the image the "
                                                          "IP-Adapter reads")
            return
        _check(self.ip_adapter is not None, "ip_adapter", "an image prompt needs an IP-Adapter (a .safetensors "
                                                          "file, or a folder holding one and its image_encoder/)")
        _check_image_file("image_prompt", self.image_prompt)

    def _check_controls(self) -> None:
        """A tuple (a list from a recipe becomes one) of at most MAX_CONTROLS ControlChoice whose images open;
        not with the SDXL refiner yet. A start image (image to image, inpainting) is checked against the model by
        the engine (control_job.py: SD 1.x, 2.x and SDXL take both)."""
        if isinstance(self.controls, list):
            object.__setattr__(self, "controls", tuple(self.controls))
        _check(isinstance(self.controls, tuple) and all(isinstance(c, ControlChoice) for c in self.controls),
               "controls", "must be a list of ControlChoice(model, image, weight, start, end, preprocessor)")
        if not self.controls:
            return
        _check(len(self.controls) <= MAX_CONTROLS, "controls",
               f"{len(self.controls)} ControlNets; at most {MAX_CONTROLS} run at once")
        _check(self.refiner is None, "controls", "ControlNets do not run with the SDXL refiner yet: leave the "
                                                 "refiner empty")
        for control in self.controls:
            _check_image_file("controls", control.image)

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
        self._check_outpaint()
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

    def _check_outpaint(self) -> None:
        """Four whole numbers of pixels (a list from a recipe becomes a tuple; all zero is no outpainting), with a
        start image and no mask, leaving the start image some of width x height."""
        value = self.outpaint
        if value is None:
            return
        _check(isinstance(value, (tuple, list)) and len(value) == 4 and all(
            _is_int(side) and 0 <= side <= MAX_OUTPAINT for side in value), "outpaint",
               f"must be four whole numbers of pixels (left, top, right, bottom), each from 0 to {MAX_OUTPAINT}, "
               f"got {value!r}")
        value = tuple(value) if any(value) else None
        object.__setattr__(self, "outpaint", value)
        if value is None:
            return
        _check(self.init_image is not None, "outpaint", "needs a start image (init_image): the picture to extend")
        _check(self.mask is None, "outpaint", "cannot be combined with a mask: outpainting paints the new area "
                                              "only (inpaint the result afterwards)")
        left, top, right, bottom = value
        for name, size, borders in (("width", self.width, left + right), ("height", self.height, top + bottom)):
            _check(size - borders >= MIN_SIZE, "outpaint",
                   f"{name} {size} less the {borders} pixels added leaves {size - borders} for the start image; "
                   f"at least {MIN_SIZE} are needed (the {name} is the whole extended picture)")

    def outpaint_area(self) -> tuple[int, int, int, int] | None:
        """Where the start image goes when outpainting: (left, top, width, height) in the picture, else None."""
        if self.outpaint is None:
            return None
        left, top, right, bottom = self.outpaint
        return left, top, self.width - left - right, self.height - top - bottom

    def with_seed(self, seed: int) -> GenerationRequest:
        return replace_request(self, seed=seed)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["loras"] = [asdict(lora) for lora in self.loras]
        data["controls"] = [asdict(control) for control in self.controls]
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
        try:
            values["controls"] = tuple(ControlChoice(**control) for control in values.get("controls", ()) or ())
        except TypeError:
            raise RequestError("controls", "must be a list of {model, image, weight, start, end, preprocessor}") \
                from None
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


def outpaint_size(start: tuple[int, int], outpaint: tuple[int, int, int, int], multiple: int = 8
                  ) -> tuple[int, int, tuple[int, int, int, int]]:
    """(width, height, outpaint) of a start image of size ``start`` extended by ``outpaint`` at its own size: the
    picture rounded up to a multiple of ``multiple`` (8, or 16 for the packed families), the pixels that adds
    going to the right and bottom borders, so that the start image is not resampled."""
    left, top, right, bottom = outpaint
    width, height = start[0] + left + right, start[1] + top + bottom
    more_x, more_y = -width % multiple, -height % multiple
    return width + more_x, height + more_y, (left, top, right + more_x, bottom + more_y)


def image_size(path: str) -> tuple[int, int]:
    """The size of the image file at ``path`` as it is shown (turned as its EXIF orientation says): its header
    only. OSError or ValueError when it cannot be read."""
    from PIL import Image

    with Image.open(path) as image:
        width, height = image.size
        turned = image.getexif().get(0x0112) in (5, 6, 7, 8)  # orientations that swap the sides
    return (height, width) if turned else (width, height)


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

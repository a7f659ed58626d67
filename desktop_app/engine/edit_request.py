"""An edit: one image and an instruction ("make it night") for an edit model (FLUX.1 Kontext, Qwen-Image-Edit,
FLUX.2 [klein]; models/edit_models.py), as one frozen request validated when it is built, and the recipe of its
result. Torch-free: the command line and the window build and check it before torch loads.

The result keeps the image's shape: its area is the image's own, at most ``MAX_EDIT_AREA`` (the one megapixel the
edit models are trained at), its sides rounded down to the model's multiple (16 for them all).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, fields

from desktop_app.engine.request import MAX_PROMPT_CHARS, MAX_SEED, _check, _encodes, _is_int, _is_number
from desktop_app.errors import RequestError, printable

MAX_EDIT_AREA = 1024 * 1024  # pixels: FLUX.1 Kontext's max_area, Qwen-Image-Edit's and FLUX.2's reference area
MIN_EDIT_SIDE = 64  # pixels: FLUX.2's smallest reference image, and a useful floor for all
MAX_STEPS, MAX_GUIDANCE = 150, 30.0
EDIT_FIELDS = ("image", "instruction", "model", "seed", "steps", "guidance_scale")


@dataclass(frozen=True)
class EditRequest:
    """``image``: the image file to change; ``instruction``: what to change; ``model``: a checked path (or a
    library name resolved before); ``steps`` and ``guidance_scale`` None take the model's defaults (edit_job)."""

    image: str
    instruction: str
    model: str
    seed: int = 0
    steps: int | None = None
    guidance_scale: float | None = None

    def __post_init__(self) -> None:
        _check(isinstance(self.instruction, str), "instruction", "must be text")
        object.__setattr__(self, "instruction", self.instruction.strip())
        _check(self.instruction != "", "instruction", 'is empty: say what to change, e.g. "make it night"')
        _check(len(self.instruction) <= MAX_PROMPT_CHARS, "instruction",
               f"is {len(self.instruction)} characters; at most {MAX_PROMPT_CHARS}")
        _check(_encodes(self.instruction), "instruction", "holds characters that are not valid text")
        _check(isinstance(self.model, str) and self.model.strip() != "", "model",
               "must name an edit model (a library name, a diffusers folder or a transformer file)")
        _check(_is_int(self.seed) and 0 <= self.seed <= MAX_SEED, "seed",
               f"must be a whole number from 0 to {MAX_SEED}, got {self.seed!r}")
        _check(self.steps is None or (_is_int(self.steps) and 1 <= self.steps <= MAX_STEPS), "steps",
               f"must be a whole number from 1 to {MAX_STEPS}, got {self.steps!r}")
        _check(self.guidance_scale is None or (_is_number(self.guidance_scale)
                                               and 0 <= self.guidance_scale <= MAX_GUIDANCE), "guidance_scale",
               f"must be a number from 0 to {MAX_GUIDANCE:g}, got {self.guidance_scale!r}")
        _check(isinstance(self.image, str) and self.image.strip() != "", "image", "must name an image file")
        edit_size(image_file_size(self.image), 16)  # too small an image is refused now, not after loading

    def with_defaults(self, steps: int, guidance_scale: float) -> EditRequest:
        """The request with the model's defaults where it left steps or guidance out."""
        from dataclasses import replace

        return replace(self, steps=self.steps if self.steps is not None else steps,
                       guidance_scale=self.guidance_scale if self.guidance_scale is not None else guidance_scale)

    def to_dict(self) -> dict:
        return asdict(self)


def image_file_size(path: str) -> tuple[int, int]:
    """The size of the image file at ``path`` as it is shown (EXIF orientation applied), from its header;
    RequestError("image") naming the file when it is missing or not an image."""
    from PIL import Image, UnidentifiedImageError

    shown = printable(path, 200)
    _check(os.path.isfile(path), "image", f"{shown}: no such image file")
    try:
        with Image.open(path) as image:
            width, height = image.size
            turned = image.getexif().get(0x0112) in (5, 6, 7, 8)  # orientations that swap the sides
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as exc:
        raise RequestError("image", f"{shown} is not an image that can be read ({type(exc).__name__})") from None
    _check(width > 0 and height > 0, "image", f"{shown} is an empty image")
    return (height, width) if turned else (width, height)


def edit_size(size: tuple[int, int], multiple: int) -> tuple[int, int]:
    """The result's (width, height) for an image of ``size``: its shape, its area at most MAX_EDIT_AREA, sides
    rounded down to ``multiple``. RequestError("image") when a side would be under MIN_EDIT_SIDE."""
    width, height = size
    scale = min(1.0, math.sqrt(MAX_EDIT_AREA / (width * height)))
    fitted = (int(width * scale) // multiple * multiple, int(height * scale) // multiple * multiple)
    _check(min(fitted) >= MIN_EDIT_SIDE, "image",
           f"is {width}x{height} pixels: too small to edit; give an image of at least {MIN_EDIT_SIDE} pixels a "
           "side")
    return fitted


@dataclass(frozen=True)
class EditRecipe:
    """How an edit made its image: the request (with the defaults it ran with), the input image's sha256 and
    size, what the engine chose (family, pipeline, device, dtype) and the timings."""

    request: EditRequest
    image_sha256: str
    input_size: tuple[int, int]
    output_size: tuple[int, int]
    model_name: str
    family: str
    pipeline: str
    device: str
    dtype: str
    app_version: str
    model_hash: str | None = None
    components: dict | None = None
    timings: dict = field(default_factory=dict)

    job = "edit"

    @property
    def prompt(self) -> str:
        return self.request.instruction

    @property
    def seed(self) -> int:
        return self.request.seed

    @property
    def total_seconds(self) -> float | None:
        total = self.timings.get("total")
        return float(total) if isinstance(total, (int, float)) else None

    def to_dict(self) -> dict:
        """The PNG's and the history's recipe: the job and its inputs, and under the generation names that
        other readers know (prompt, width, height, steps, guidance_scale, seed, model) the same values."""
        request = self.request
        data = {"job": "edit", **request.to_dict(), "image_sha256": self.image_sha256,
                "input_size": list(self.input_size), "prompt": request.instruction,
                "width": self.output_size[0], "height": self.output_size[1], "output_size": list(self.output_size),
                "seeds": [request.seed], "sampler": "Euler", "batch_size": 1}
        data.update({f.name: getattr(self, f.name) for f in fields(self)
                     if f.name not in ("request", "image_sha256", "input_size", "output_size")})
        return {key: value for key, value in data.items() if value is not None}

    @classmethod
    def from_dict(cls, data: dict) -> EditRecipe:
        """A recipe written by ``to_dict`` (the request is validated again: its image must still be there)."""
        request = EditRequest(**{name: data.get(name) for name in EDIT_FIELDS if data.get(name) is not None})
        sizes = {name: tuple(data.get(name) or (0, 0)) for name in ("input_size", "output_size")}
        values = {f.name: data.get(f.name) for f in fields(cls) if f.name not in ("request", *sizes)}
        values.update(timings=dict(values.get("timings") or {}),
                      **{name: str(values.get(name) or "") for name in ("image_sha256", "model_name", "family",
                                                                         "pipeline", "device", "dtype",
                                                                         "app_version")})
        return cls(request=request, **sizes, **values)


"""The recipe: how a finished job made its image, as one typed object (issue 15), serialised here and nowhere else.

``Recipe`` is a generation: the request it ran, plus what the engine chose and measured (seeds, model name and
hash, device, timings, memory plan and fallbacks, refiner, hires and upscaler records). ``UpscaleRecipe`` is an
upscale job. ``to_dict`` gives the flat JSON-ready dict the PNG's recipe chunk and the history keep (the request's
fields at the top level, so that a recipe read back from a file is a request again); ``recipe_from_dict`` reads
one back. Torch-free: the window, the command line and the studio use it without loading the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from desktop_app.engine.edit_request import EditRecipe
from desktop_app.engine.request import GenerationRequest

Size = tuple[int, int]


@dataclass(frozen=True)
class Recipe:
    request: GenerationRequest  # with the seed of the first image
    seeds: tuple[int, ...]
    model_name: str
    device: str
    dtype: str
    app_version: str
    family: str = ""
    timings: dict = field(default_factory=dict)  # stage -> seconds (rounded), "total" among them
    output_size: Size | None = None  # after upscaling
    model_hash: str | None = None  # AUTOMATIC1111's short hash, when the model is one file
    lora_hashes: dict | None = None  # LoRA name -> short hash; None: no LoRA was applied
    memory_fallbacks: tuple[str, ...] = ()  # the lighter modes a low-memory run took
    notices: tuple[str, ...] = ()  # what a person should know about the run (a VAE decode redone in float32 ...)
    refiner_model: dict | None = None  # the SDXL refiner's record (name, switch, steps)
    hires: dict | None = None  # the hires fix's record (size, strength, upscaler)
    upscaler: dict | None = None  # the upscaler's record (name, file, hash, architecture, scale)
    # where the weights lived (engine/memory_plan.py: "all on device", "model offload", "group offload",
    # "sequential offload"); None in recipes written before there was a plan
    memory_plan: str | None = None
    # image to image and inpainting: the sha256 of the start image's and the mask's files (the request holds
    # their paths, the strength and the mask's feather); None for text to image and in older recipes
    init_image_sha256: str | None = None
    mask_sha256: str | None = None
    # a transformer file's components folder: {"path", "hash"} (models/model_hash.components_record)
    components: dict | None = None
    # the ControlNets, one record each: name, hash, image_sha256, weight, start, end, preprocessor (the request's
    # "controls" hold their paths); () for none and in older recipes
    control_models: tuple[dict, ...] = ()
    image_prompt_model: dict | None = None  # the IP-Adapter's record: name, hash, encoder, image_sha256, weight

    job = "generate"

    @property
    def prompt(self) -> str:
        return self.request.prompt

    @property
    def seed(self) -> int | None:
        return self.seeds[0] if self.seeds else self.request.seed

    @property
    def total_seconds(self) -> float | None:
        total = self.timings.get("total")
        return float(total) if isinstance(total, (int, float)) else None

    def to_dict(self) -> dict:
        data = self.request.to_dict()
        data.update(seed=self.seed, seeds=list(self.seeds), model_name=self.model_name, family=self.family,
                    device=self.device, dtype=self.dtype, app_version=self.app_version, timings=dict(self.timings))
        # the records are left out when empty; "lora_hashes" is there whenever LoRAs were applied
        _put(data, output_size=list(self.output_size) if self.output_size else None, model_hash=self.model_hash)
        if self.lora_hashes is not None:
            data["lora_hashes"] = dict(self.lora_hashes)
        _put(data, memory_fallbacks=list(self.memory_fallbacks), notices=list(self.notices),
             refiner_model=self.refiner_model, hires=self.hires, upscaler=self.upscaler,
             memory_plan=self.memory_plan)
        _put(data, init_image_sha256=self.init_image_sha256, mask_sha256=self.mask_sha256,
             components=self.components, control_models=[dict(record) for record in self.control_models],
             image_prompt_model=self.image_prompt_model)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Recipe:
        """A recipe written by ``to_dict``. The request is validated again (a RequestError names a bad field);
        missing record fields get their defaults."""
        request = GenerationRequest.from_dict(data)
        seeds = tuple(int(seed) for seed in data.get("seeds") or ([data["seed"]] if data.get("seed") is not None
                                                                   else []))
        size = data.get("output_size")
        return cls(
            request=request, seeds=seeds, model_name=str(data.get("model_name") or ""),
            device=str(data.get("device") or ""), dtype=str(data.get("dtype") or ""),
            app_version=str(data.get("app_version") or ""), family=str(data.get("family") or ""),
            timings=dict(data.get("timings") or {}), output_size=tuple(size) if size else None,
            model_hash=data.get("model_hash"),
            lora_hashes=None if data.get("lora_hashes") is None else dict(data["lora_hashes"]),
            memory_fallbacks=tuple(data.get("memory_fallbacks") or ()), notices=tuple(data.get("notices") or ()),
            refiner_model=data.get("refiner_model"), hires=data.get("hires"), upscaler=data.get("upscaler"),
            memory_plan=str(data["memory_plan"]) if data.get("memory_plan") else None,
            init_image_sha256=_text_or_none(data.get("init_image_sha256")),
            mask_sha256=_text_or_none(data.get("mask_sha256")),
            components=dict(data["components"]) if isinstance(data.get("components"), dict) else None,
            control_models=tuple(dict(record) for record in data.get("control_models") or ()
                                 if isinstance(record, dict)),
            image_prompt_model=dict(data["image_prompt_model"]) if isinstance(data.get("image_prompt_model"), dict)
            else None)


@dataclass(frozen=True)
class UpscaleRecipe:
    input: str | None  # the source file's path (None for an image given in memory)
    input_size: Size
    output_size: Size
    mode: str  # the PIL mode of the result
    scale: float
    tile: int  # 0: untiled
    tiles: int
    upscaler: dict  # the upscaler's record (name, file, hash, architecture, scale)
    device: str
    dtype: str
    app_version: str
    timings: dict = field(default_factory=dict)

    job = "upscale"

    @property
    def prompt(self) -> str:
        return ""

    @property
    def seed(self) -> None:
        return None

    @property
    def total_seconds(self) -> float | None:
        total = self.timings.get("total")
        return float(total) if isinstance(total, (int, float)) else None

    @property
    def upscaler_name(self) -> str:
        return str(self.upscaler.get("name", "?"))

    def to_dict(self) -> dict:
        data = {"job": "upscale"} | {f.name: getattr(self, f.name) for f in fields(self)}
        data.update(input_size=list(self.input_size), output_size=list(self.output_size),
                    upscaler=dict(self.upscaler), timings=dict(self.timings))
        return data

    @classmethod
    def from_dict(cls, data: dict) -> UpscaleRecipe:
        values = {f.name: data.get(f.name) for f in fields(cls)}
        values["input_size"] = tuple(values["input_size"] or (0, 0))
        values["output_size"] = tuple(values["output_size"] or (0, 0))
        values["upscaler"] = dict(values["upscaler"] or {})
        values["timings"] = dict(values["timings"] or {})
        return cls(**values)


AnyRecipe = Recipe | UpscaleRecipe | EditRecipe


def _put(data: dict, **records) -> None:
    """The records that hold something, in order."""
    data.update((key, value) for key, value in records.items() if value)


def _text_or_none(value) -> str | None:
    return str(value) if value else None


def recipe_from_dict(data: dict) -> AnyRecipe:
    """The typed recipe of a dict written by ``to_dict`` (its "job" says which kind)."""
    if data.get("job") == "edit":
        return EditRecipe.from_dict(data)
    return UpscaleRecipe.from_dict(data) if data.get("job") == "upscale" else Recipe.from_dict(data)

"""ControlNet (issue 17): one or several ControlNets steer text to image with their images, weights and the share
of the steps each steers; on SD, SDXL and Flux.1 also image to image, inpainting and outpainting (a start image,
and a mask): the run's image job (image_job.py) then calls the ControlNet pipeline's img2img or inpaint twin
(IMAGE_CONTROLNETS: diffusers' StableDiffusion[XL]ControlNetImg2ImgPipeline, ...InpaintPipeline,
FluxControlNetImg2ImgPipeline, FluxControlNetInpaintPipeline), made the same way, with the start image, strength
and mask as its own pipeline would get them, so that weight 0 gives exactly the plain image-to-image or inpaint
picture (Flux.1's: control_flow.py). SD3's refuse a start image in one line (diffusers' SD3 ControlNet
inpainting pipeline takes no start image and needs an inpainting ControlNet: control_flow.py).

The ControlNets load once per folder (kept here until the model is unloaded, or until a request asks for another
set) on the model's device and dtype, after their config is checked against the loaded UNet or transformer (a
UNet's: the same cross-attention width, blocks and added embedding; a transformer's: its family and widths): a
ControlNet for another family is refused in one line before its weights load. The run's pipeline is the
family's diffusers ControlNet pipeline (models/families.py CONTROLNETS: StableDiffusionControlNetPipeline,
StableDiffusionXLControlNetPipeline, StableDiffusion3ControlNetPipeline, FluxControlNetPipeline; the last two
through control_flow.py) made from the loaded pipeline's components (image_job.from_components: no float32
cast, no extra memory) and the ControlNets, several as diffusers' multi-ControlNet model. It shares the
scheduler object, so the request's sampler, the previews' x0 capture and cancel work as for text to image; it
gets the same prompt embeddings and the same seeded initial noise, so a ControlNet of weight 0 (or one whose
start/end lie outside the steps) gives the plain picture.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace


from desktop_app.engine.control_flow import FLOW_CONTROLNETS, FLOW_IMAGE_CONTROLNETS, mean_encoding_class
from desktop_app.engine.control_images import control_image
from desktop_app.engine.image_job import is_fill_model
from desktop_app.engine.request import GenerationRequest
from desktop_app.errors import RequestError
from desktop_app.models import controlnet_folder
from desktop_app.models.families import FAMILIES
from desktop_app.models.model_hash import model_hash

_loaded: dict[tuple, object] = {}  # (folder, weights' size and time, device, dtype) -> the ControlNet model
# the transformer families' text-to-image pipelines and their ControlNet pipelines (models/families.py)
_TRANSFORMER_PIPELINES = {family.text_to_image: family.controlnet for family in FAMILIES.values()
                          if family.controlnet in FLOW_CONTROLNETS}
# with a start image: the ControlNet pipeline's (image to image, inpaint) twins; SD's, SDXL's and Flux.1's
IMAGE_CONTROLNETS = {**FLOW_IMAGE_CONTROLNETS,
    "StableDiffusionControlNetPipeline": ("StableDiffusionControlNetImg2ImgPipeline",
                                          "StableDiffusionControlNetInpaintPipeline"),
    "StableDiffusionXLControlNetPipeline": ("StableDiffusionXLControlNetImg2ImgPipeline",
                                            "StableDiffusionXLControlNetInpaintPipeline")}


@dataclass
class ControlJob:
    """The run's ControlNet pipeline and, per ControlNet, its control image, weight, start and end."""

    pipe: object
    images: list
    weights: list[float]
    starts: list[float]
    ends: list[float]
    records: tuple[dict, ...]  # the recipe's: name, hash, image sha256, weight, start, end, preprocessor

    def describe(self) -> str:
        """The denoise stage's addition, e.g. "ControlNet canny-sd15 (weight 0.8, steps 0-0.5, canny)"."""
        parts = [f"{r['name']} (weight {r['weight']:g}, steps {r['start']:g}-{r['end']:g}, {r['preprocessor']})"
                 for r in self.records]
        return f"ControlNet{'s' if len(parts) > 1 else ''} " + ", ".join(parts)

    def arguments(self, kwargs: dict) -> dict:
        """The ControlNet pipeline's call: ``kwargs`` (text to image's, less what it does not take) with the
        control images, weights and ranges (single values for one ControlNet, lists for several)."""
        from desktop_app.engine.families.base import call_parameters

        taken = call_parameters(type(self.pipe))
        call = {name: value for name, value in kwargs.items() if name in taken}
        one = len(self.images) == 1
        image = "control_image" if "control_image" in taken else "image"  # Flux's and SD3's name it so
        call.update({image: self.images[0] if one else list(self.images)},
                    controlnet_conditioning_scale=self.weights[0] if one else list(self.weights),
                    control_guidance_start=self.starts[0] if one else list(self.starts),
                    control_guidance_end=self.ends[0] if one else list(self.ends))
        if not one and "control_mode" in taken:  # Flux's img2img and inpaint twins run none without one each
            call["control_mode"] = [None] * len(self.images)
        return call


def make_control(request: GenerationRequest, model, emit_load=None, job=None) -> ControlJob | None:
    """The ControlNet job of ``request`` on the loaded ``model`` (engine/loader.LoadedModel), or None when it has
    no ControlNet. ``emit_load(detail)`` tells which ControlNets load. ``job``: the run's image job
    (image_job.ImageJob: a start image, with a mask or not), whose ControlNet twin then runs it (SD, SDXL,
    Flux.1).
    RequestError for a model family with no ControlNet pipeline here (or none that takes a start image);
    ModelError for a ControlNet that is not one or is for another family."""
    if not request.controls:
        return None
    pipe = model.pipe
    if is_fill_model(pipe):  # its transformer reads the mask and start image as extra channels
        raise RequestError("controls", f"ControlNets do not run on FLUX.1 Fill models here; the model "
                                       f"{model.display_name} is one: inpaint with it alone, or use a FLUX.1 "
                                       "[dev] or [schnell] model with the ControlNet")
    class_name = pipeline_class(pipe)
    family = controlnet_folder.family_name(model.family)
    if class_name is None:
        raise RequestError("controls", f"{controlnet_folder.CONTROL_FAMILIES_LINE}; the model "
                                       f"{model.display_name} is {family}")
    if job is not None:
        if class_name not in IMAGE_CONTROLNETS:
            raise RequestError("controls", f"ControlNets take a start image (image to image, inpainting) with "
                                           f"Stable Diffusion 1.x, 2.x, SDXL and Flux.1 models only; the model "
                                           f"{model.display_name} is {family}: leave the start image empty")
        class_name = IMAGE_CONTROLNETS[class_name][1 if job.inpaint_pipeline else 0]
    denoiser = dict((pipe.unet if getattr(pipe, "unet", None) is not None else pipe.transformer).config)
    infos = []
    for choice in request.controls:  # every config checked before any weights load
        info = controlnet_folder.read_controlnet(choice.model)
        controlnet_folder.check_pairing(info, model.family, denoiser, model.display_name)
        infos.append(info)
    wanted = [_key(info, model) for info in infos]
    for key in [key for key in _loaded if key not in wanted]:  # another set: the old ones go first
        del _loaded[key]
    nets = [_load(info, key, model, emit_load) for info, key in zip(infos, wanted)]
    images, records = [], []
    for choice, info in zip(request.controls, infos):
        image, sha256 = control_image(choice.image, choice.preprocessor, (request.width, request.height))
        images.append(image)
        records.append({"name": info.name, "hash": model_hash(info.path) or None, "image_sha256": sha256,
                        "weight": choice.weight, "start": choice.start, "end": choice.end,
                        "preprocessor": choice.preprocessor})
    control_pipe = build_pipeline(pipe, class_name, nets)
    controls = request.controls  # diffusers checks for float (an int weight of 1 is refused)
    return ControlJob(control_pipe, images, [float(c.weight) for c in controls],
                      [float(c.start) for c in controls], [float(c.end) for c in controls], tuple(records))


def pipeline_class(pipe) -> str | None:
    """The diffusers ControlNet pipeline for the loaded text-to-image ``pipe``: SDXL's for an SDXL base, SD's for
    every other UNet with one text encoder (SD 1.x, 2.x, the embedded model), SD3's and Flux.1's for theirs (not
    Chroma, nor an edit model such as FLUX.1 Kontext); None for the rest."""
    unet = getattr(pipe, "unet", None)
    name = type(pipe).__name__
    if unet is None:
        return _TRANSFORMER_PIPELINES.get(name)
    if name == "StableDiffusionXLPipeline":
        return "StableDiffusionXLControlNetPipeline"
    if name in ("StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline") \
            and unet.config.in_channels == 4:
        return "StableDiffusionControlNetPipeline"
    return None


def build_pipeline(pipe, class_name: str, nets: list):
    """``class_name`` from ``pipe``'s components and the ControlNets (several: diffusers wraps the list in a
    MultiControlNetModel), on ``pipe``'s scheduler object."""
    import diffusers

    from desktop_app.engine.image_job import from_components

    given = SimpleNamespace(components={**pipe.components, "controlnet": nets[0] if len(nets) == 1 else nets},
                            config=pipe.config)
    flow = {*FLOW_CONTROLNETS, *(name for twins in FLOW_IMAGE_CONTROLNETS.values() for name in twins)}
    cls = mean_encoding_class(class_name) if class_name in flow else getattr(diffusers, class_name)
    made = from_components(cls, given)
    made.scheduler = pipe.scheduler  # the request's sampler, and the previews' x0 capture
    if hasattr(pipe, "watermark"):  # SDXL: watermark as the loaded pipeline does (or not)
        made.watermark = pipe.watermark
    made.set_progress_bar_config(disable=True)
    return made


def free() -> None:
    """Forget the loaded ControlNets (Engine.unload frees the memory after)."""
    _loaded.clear()


def _key(info, model) -> tuple:
    stat = info.weights.stat()
    return str(Path(info.path).resolve()), stat.st_size, stat.st_mtime_ns, str(model.device), str(model.dtype)


def _load(info, key: tuple, model, emit_load):
    held = _loaded.get(key)
    if held is not None:
        return held
    import diffusers

    from desktop_app.engine.loader import _dtype_kwargs

    if emit_load is not None:
        emit_load(f"ControlNet {info.name} ({controlnet_folder.family_name(info.family)})")
    net_class = getattr(diffusers, info.config["_class_name"])  # ControlNetModel, SD3ControlNetModel, Flux's
    net = net_class.from_pretrained(info.path, local_files_only=True, use_safetensors=True,
                                          variant=info.variant, **_dtype_kwargs(model.dtype))
    net = net.to(model.device).eval()
    _loaded[key] = net
    return net


def loaded_count() -> int:
    """How many ControlNets are held (tests check that unload frees them)."""
    return len(_loaded)


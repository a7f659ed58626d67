"""Image to image and inpainting (issue 17): which diffusers pipeline runs the job, and its call.

The job's pipeline is the family's image-to-image or inpaint pipeline (models/families.py names them), made with
``from_pipe`` from the loaded text-to-image pipeline: the same UNet or transformer, VAE and text encoders, no
extra memory, and the request's sampler (the scheduler object is shared, so previews and cancel work as for text
to image). The seeded generators draw the noise; the start image is noised to ``strength`` of the schedule and
``int(steps * strength)`` steps run, as in AUTOMATIC1111 and diffusers.

Inpainting runs the family's inpaint pipeline. For a 9-channel SD inpainting UNet (or a Fill model) that is the
model's own masked conditioning; for every other model, the embedded one included, the pipeline blends the
known region back at every step (the start image's latents noised to the next timestep outside the mask:
diffusers' 4-channel branch of StableDiffusionInpaintPipeline, and the same in the Flux, SD3, Chroma, Z-Image,
Qwen-Image and FLUX.2 [klein] inpaint pipelines). The model gets the mask grown to whole latent cells (packed
tokens for Flux) around the feathered area; after decoding, the pixels outside the feathered mask are pasted
back from the start image (image_inputs.paste_back), so that they are kept exactly. Outpainting is inpainting of
the new area of an extended picture (image_inputs.outpaint_inputs). A family with an inpaint
pipeline but none for image to image (FLUX.2 [klein]) runs image to image as inpainting of the whole frame.
A FLUX.1 Fill model (models/flux_fill.py: a FluxFillPipeline folder, or a Fill transformer file with the
components of a Flux.1 folder) inpaints and outpaints with diffusers' FluxFillPipeline, the mask and the start
image as its own conditioning; text to image and plain image to image on it are refused in one line.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from desktop_app.engine.image_inputs import ImageInputs, model_mask, paste_back
from desktop_app.errors import RequestError
from desktop_app.models import flux_fill

_twins: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # text-to-image pipe -> {class name: twin}
# pipelines that are not a family's text-to-image class but run as one (a folder saved from another class)
_SD_CLASSES = ("StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline")


@dataclass
class ImageJob:
    """One run's image job: the inputs, the pipeline that runs it, whether that is an inpaint pipeline."""

    inputs: ImageInputs
    pipe: object  # the diffusers pipeline the job calls
    inpaint_pipeline: bool
    cell: int  # pixels per latent cell (per packed token): the mask the model gets is whole cells
    strength: float

    @property
    def kind(self) -> str:
        if self.inputs.outpaint:
            return "outpaint"
        return "inpaint" if self.inputs.mask is not None else "image to image"

    def describe(self, steps: int, strength: float, sampler: str) -> str:
        """The denoise stage's line, e.g. "inpaint: 12 of 20 steps (strength 0.6), DPM++ 2M"."""
        return f"{self.kind}: {int(steps * strength)} of {steps} steps (strength {strength:g}), {sampler}"

    def arguments(self, kwargs: dict, pipe=None) -> dict:
        """The pipeline call's arguments: ``kwargs`` (those of text to image, less what this pipeline, or
        ``pipe`` when given (a ControlNet twin: control_job.py), does not take) with the start image, the
        strength and the mask the model gets."""
        from desktop_app.engine.families.base import call_parameters

        taken = call_parameters(type(pipe or self.pipe))
        call = {name: value for name, value in kwargs.items() if name in taken}
        call.update(image=self.inputs.image, strength=self.strength)
        if self.inpaint_pipeline:
            if self.inputs.feather is not None:
                call["mask_image"] = model_mask(self.inputs.feather, self.cell)
            else:  # image to image by an inpaint pipeline: the whole frame is repainted
                from PIL import Image

                call["mask_image"] = Image.new("L", self.inputs.image.size, 255)
        return call

    def finish(self, images: list) -> list:
        """The decoded images with the outside of the feathered mask pasted back from the start image."""
        if self.inputs.feather is None:
            return images
        return [paste_back(image, self.inputs.image, self.inputs.feather) for image in images]


def make_job(inputs: ImageInputs | None, pipe, family, strength: float) -> ImageJob | None:
    """The job for ``inputs`` on the loaded ``pipe`` (``family``: its engine family), or None for text to
    image. RequestError naming init_image or mask when diffusers has no pipeline for it in this family."""
    if is_fill_model(pipe):  # FLUX.1 Fill: its own pipeline, for a start image with a mask only
        if inputs is None or inputs.mask is None:
            field, job = ("init_image", "text to image") if inputs is None else ("mask", "image to image")
            raise RequestError(field, flux_fill.needs_a_mask(job))
        return ImageJob(inputs, twin(pipe, flux_fill.PIPELINE), True, int(family.size_multiple(pipe)), strength)
    if inputs is None:
        return None
    image_to_image, inpaint = job_classes(type(pipe).__name__)
    name = family.display() if hasattr(family, "display") else family.key
    if inputs.mask is not None:
        if inpaint is None:
            job, field = ("outpainting", "outpaint") if inputs.outpaint else ("inpainting", "mask")
            raise RequestError(field, f"{job} is not available for {name} models here: diffusers has no "
                                      "inpaint pipeline for them")
        chosen = inpaint
    elif image_to_image is not None:
        chosen = image_to_image
    elif inpaint is not None:
        chosen = inpaint
    else:
        raise RequestError("init_image", f"image to image is not available for {name} models here: diffusers "
                                         "has no image-to-image or inpaint pipeline for them")
    return ImageJob(inputs, twin(pipe, chosen), chosen == inpaint, int(family.size_multiple(pipe)), strength)


def is_fill_model(pipe) -> bool:
    """A FLUX.1 Fill model: a FluxFillPipeline folder, or a Fill transformer in a Flux pipeline (a single file
    with the components of another Flux.1 folder)."""
    transformer = getattr(pipe, "transformer", None)
    config = getattr(transformer, "config", None)
    if type(pipe).__name__ == flux_fill.PIPELINE:
        return True
    return type(transformer).__name__ == "FluxTransformer2DModel" and flux_fill.is_fill(transformer=config)


def job_classes(pipeline_class: str) -> tuple[str | None, str | None]:
    """(image-to-image class, inpaint class) of the family whose pipelines include ``pipeline_class``: the
    declared ones (models/families.py); an SD pipeline of no declared family (the embedded model) takes SD's."""
    from desktop_app.models.families import FAMILIES

    for declared in FAMILIES.values():
        runs_it = pipeline_class in (*declared.pipeline_classes, *declared.pipelines)
        if runs_it and (declared.image_to_image or declared.inpaint):
            return declared.image_to_image, declared.inpaint
    if pipeline_class == "StableDiffusionPipeline" or pipeline_class in _SD_CLASSES:
        return _SD_CLASSES
    return None, None


def twin(pipe, class_name: str):
    """``class_name`` made from ``pipe``'s components (once per pipe and class), on ``pipe``'s scheduler."""
    made = _twins.setdefault(pipe, {})
    if class_name == type(pipe).__name__:
        return pipe
    if class_name not in made:
        import diffusers

        made[class_name] = from_components(getattr(diffusers, class_name), pipe)
        if hasattr(made[class_name], "set_progress_bar_config"):
            made[class_name].set_progress_bar_config(disable=True)
    made[class_name].scheduler = pipe.scheduler  # the request's sampler, and the previews' x0 capture
    _chroma_inpaint_config(made[class_name])
    return made[class_name]


def from_components(cls, pipe):
    """``cls.from_pipe(pipe)`` without its last step: diffusers 0.42's from_pipe ends with
    ``new_pipeline.to(dtype=float32)`` when no dtype is given, which casts the shared modules in place (a bf16
    model on the GPU becomes float32 for good) and refuses quantized (GGUF) ones. The same components and the
    original's config values the new class takes (``requires_safety_checker``, ``is_distilled`` ...)."""
    expected, optional = cls._get_signature_keys(cls)
    components = {name: module for name, module in pipe.components.items() if name in expected}
    config = dict(pipe.config)
    options = {name: config[name] for name in optional if name in config}
    options.update({name[1:]: value for name, value in config.items()
                    if name.startswith("_") and name[1:] in optional and name[1:] not in options})
    return cls(**components, **options)


def _chroma_inpaint_config(pipe) -> None:
    """diffusers 0.42's ChromaInpaintPipeline reads ``transformer.config.guidance_embeds``, which Chroma's
    transformer config does not have (Chroma has no distilled guidance input), and fails before its first step;
    the value only feeds a variable it never uses. The key is added as False, what it means for Chroma."""
    transformer = getattr(pipe, "transformer", None)
    if type(pipe).__name__ == "ChromaInpaintPipeline" and transformer is not None \
            and "guidance_embeds" not in transformer.config:
        transformer.register_to_config(guidance_embeds=False)

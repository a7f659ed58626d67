"""The edit job: an image and an instruction through an edit model's own diffusers pipeline (FluxKontextPipeline,
QwenImageEditPipeline or its Plus, Flux2KleinPipeline with ``image=``), as numbered steps.

The pipeline is the loaded model's own when its folder is an edit release, else the family's edit pipeline made
from the loaded components (image_job.from_components: the same modules, no extra memory). The image is fitted to
the result's size (edit_request.edit_size) before the pipeline sees it, so that every family starts from the same
pixels. Cancel is checked at every step; the job ends with exactly one terminal event (outcome.py).
"""

from __future__ import annotations

import threading
import time
import weakref

import torch

from desktop_app.engine.edit_request import EditRecipe, EditRequest, edit_size
from desktop_app.engine.events import Emit, Finished, Progress, StageStarted
from desktop_app.engine.outcome import Outcome
from desktop_app.errors import CancelledError, ModelError

# (steps, guidance) of the edit pipelines whose makers' advice differs from their family's text-to-image defaults
EDIT_DEFAULTS = {"FluxKontextPipeline": (28, 2.5), "QwenImageEditPipeline": (50, 4.0),
                 "QwenImageEditPlusPipeline": (40, 4.0)}
_made: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # loaded pipe -> {class name: edit pipe}


def run_edit(engine, request: EditRequest, emit: Emit, cancel: threading.Event | None = None) -> Finished | None:
    """Edit ``request.image`` by ``request.instruction`` with the model ``request.model`` on ``engine`` (which
    loads it, or keeps it loaded). Stages and per-step Progress go to ``emit``, then one terminal event. Returns
    the Finished (one image, an EditRecipe), or None when cancelled. RequestError for a bad image, ModelError
    for a model that cannot edit (after Failed)."""
    import desktop_app
    from desktop_app.engine.families import for_family
    from desktop_app.engine.image_inputs import read_image
    from desktop_app.models import edit_models
    from desktop_app.models.model_hash import model_hash

    cancel = cancel or threading.Event()
    timings: dict = {}
    start = time.perf_counter()
    with Outcome(emit) as outcome:
        _check_cancel(cancel)

        # 1. the image, read in full now (a damaged file fails here, before the model loads)
        source, sha256 = read_image(request.image, "image")
        source = _rgb(source)
        size = edit_size(source.size, 16)

        # 2. the model, and the pipeline that edits with it
        begin = time.perf_counter()
        model = engine.load(request.model, emit, (size[0], size[1], 1))
        folder_class = "" if model.components is not None or model.path.is_file() else str(
            model.index.get("_class_name", ""))
        chosen = edit_models.edit_model_of(model.path, model.family, folder_class, model.display_name)
        family = for_family(model.family)
        size = edit_size(source.size, int(family.size_multiple(model.pipe)))
        pipe = edit_pipe(model, chosen.pipeline)
        pipe.scheduler = family.make_scheduler("Euler", model.base_scheduler_config)  # the model's own, fresh
        request = request.with_defaults(*_defaults(model, chosen))
        timings["load"] = time.perf_counter() - begin
        _check_cancel(cancel)

        # 3. denoise from noise beside the image's tokens, then the VAE decode (inside the pipeline)
        emit(StageStarted("denoise", f"edit with {chosen.pipeline}: {request.steps} steps, guidance "
                                     f"{request.guidance_scale:g}, {size[0]}x{size[1]}"))
        begin = time.perf_counter()

        def on_step_end(_pipe, i, _t, callback_kwargs):
            _check_cancel(cancel)  # stops at once: diffusers' own interrupt would still decode
            emit(Progress(i + 1, request.steps, None, time.perf_counter() - start))
            return callback_kwargs

        with torch.inference_mode():
            image = pipe(**call_arguments(pipe, request, source.resize(size, _lanczos()) if source.size != size
                                          else source, size, model.device, on_step_end)).images[0]
        timings["denoise"] = time.perf_counter() - begin
        timings["total"] = time.perf_counter() - start

        # 4. the result and its recipe
        recipe = EditRecipe(
            request=request, image_sha256=sha256, input_size=tuple(source.size), output_size=tuple(image.size),
            model_name=model.display_name, family=model.family, pipeline=chosen.pipeline, device=str(model.device),
            dtype=str(model.dtype).removeprefix("torch."), app_version=desktop_app.__version__,
            model_hash=model_hash(model.path) or None, components=getattr(model, "components_record", None),
            timings={name: round(value, 4) for name, value in timings.items()})
        outcome.result = Finished(images=[image], seeds=[request.seed], recipe=recipe, timings=recipe.timings)
    return outcome.result


def call_arguments(pipe, request: EditRequest, image, size: tuple[int, int], device: torch.device,
                   on_step_end) -> dict:
    """The edit pipeline's call: the image and the instruction, the size, the steps, the seeded generator, and
    the guidance as each pipeline takes it (Qwen-Image-Edit's is true classifier-free guidance, with a blank
    negative prompt as its makers' examples; Kontext keeps the size asked for, not its preferred ones)."""
    from desktop_app.engine.families.base import call_parameters

    generator = torch.Generator("cpu" if device.type == "mps" else str(device)).manual_seed(request.seed)
    call = {"image": image, "prompt": request.instruction, "width": size[0], "height": size[1],
            "num_inference_steps": request.steps, "generator": generator, "output_type": "pil",
            "callback_on_step_end": on_step_end}
    name = type(pipe).__name__
    if name.startswith("QwenImageEdit"):
        call["true_cfg_scale"] = request.guidance_scale
        if request.guidance_scale > 1:
            call["negative_prompt"] = " "
    else:
        call["guidance_scale"] = request.guidance_scale
    if name == "FluxKontextPipeline":
        call.update(max_area=size[0] * size[1], _auto_resize=False)
    taken = call_parameters(type(pipe))
    return {key: value for key, value in call.items() if key in taken}


def edit_pipe(model, class_name: str):
    """``class_name`` on ``model``'s loaded components (the loaded pipeline itself when it is that class), made
    once per loaded pipeline. Qwen-Image-Edit needs its processor (the image side of its text encoder's input):
    the folder's, or a transformer file's components folder's."""
    pipe = model.pipe
    if type(pipe).__name__ == class_name:
        return pipe
    made = _made.setdefault(pipe, {})
    if class_name not in made:
        import diffusers

        from desktop_app.engine.image_job import from_components

        cls = getattr(diffusers, class_name)
        expected, _ = cls._get_signature_keys(cls)
        if "processor" in expected and pipe.components.get("processor") is None:
            shared = {name: module for name, module in pipe.components.items() if name in expected}
            made[class_name] = cls(**shared, processor=_processor(model))
        else:
            made[class_name] = from_components(cls, pipe)
        if hasattr(made[class_name], "set_progress_bar_config"):
            made[class_name].set_progress_bar_config(disable=True)
    return made[class_name]


def _processor(model):
    """Qwen-Image-Edit's Qwen2-VL processor from ``processor/`` of the model's folder or components folder."""
    from transformers import AutoProcessor

    for folder in (model.components, model.path):
        if folder is not None and (folder / "processor").is_dir():
            try:
                return AutoProcessor.from_pretrained(folder / "processor", local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ModelError(f"Cannot load the processor in {folder / 'processor'}: {exc}") from None
    raise ModelError(f"{model.display_name} has no Qwen-Image-Edit processor (processor/); name a Qwen-Image-Edit "
                     "diffusers folder as its components to edit with it")


def _defaults(model, chosen) -> tuple[int, float]:
    """(steps, guidance): what the model's folder declares, else the edit pipeline's makers' advice, else the
    family's (and its variant's) text-to-image defaults."""
    from desktop_app.models import families

    declared = families.FAMILIES[chosen.family].defaults()
    steps, guidance = EDIT_DEFAULTS.get(chosen.pipeline, (declared["steps"], declared["guidance_scale"]))
    own = model.defaults
    return int(own.get("steps", steps)), float(own.get("guidance_scale", guidance))


def _rgb(image):
    """The image as RGB; transparency is laid on white (what a viewer shows), not dropped to its hidden colours."""
    from PIL import Image

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def _lanczos():
    from PIL import Image

    return Image.Resampling.LANCZOS


def _check_cancel(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise CancelledError("cancelled")


"""The steps of one ``Engine.run``, as methods of a per-run object (``GenerationRun``), and the plain
functions they use. Engine.run (generate.py) calls the steps in order, as a diffusers pipeline's ``__call__``
does; what one step makes for the next (the model, the text embeddings, the generators, the images) are the
run's attributes.

Cancel is checked between the steps and at every denoising step: ``check_cancel`` raises CancelledError,
also inside ``callback_on_step_end``, which stops the pipeline at once (diffusers' own ``_interrupt`` would
still run the VAE decode); Engine.run turns it into Cancelled and None.

The hires fix, as users know it from AUTOMATIC1111: the decoded image is enlarged ``hires_scale`` times (by
the upscaler the request names, or Lanczos when it names none), then a short img2img pass at the larger size
re-draws fine detail; ``hires_strength`` (0..1) is the share of the denoising schedule that pass runs. With
the hires fix on, the named upscaler serves that enlargement and there is no separate upscale stage after it.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from contextlib import contextmanager, nullcontext
from functools import partial

import torch

import desktop_app

from desktop_app.engine import memory, refiner
from desktop_app.errors import CancelledError, RequestError
from desktop_app.engine.events import Emit, Finished, Progress, StageStarted
from desktop_app.engine.loader import LoadedModel
from desktop_app.engine.control_job import ControlJob, make_control
from desktop_app.engine.image_inputs import load_inputs
from desktop_app.engine.image_job import ImageJob, job_classes, make_job, twin
from desktop_app.engine.image_prompt import ImagePromptJob, make_image_prompt
from desktop_app.engine.lora import apply_embeddings, apply_loras
from desktop_app.models.model_hash import model_hash
from desktop_app.engine.preview import DEFAULT_PREVIEW_SHARE, PreviewPacer, capture_x0
from desktop_app.engine.recipe import Recipe
from desktop_app.engine.request import MAX_SEED, GenerationRequest
from desktop_app.engine.families import EngineFamily, for_family


class GenerationRun:
    """One run of a request: where its events go, its cancel flag, its clock, and what each step hands on to
    the next. Made by Engine.run for each call and dropped after it."""

    def __init__(self, request: GenerationRequest, emit: Emit, cancel: threading.Event | None,
                 device: torch.device, preview_share: float | None = DEFAULT_PREVIEW_SHARE):
        self.request, self.emit, self.device = request, emit, device
        self.cancel = cancel or threading.Event()
        self.preview_share = preview_share
        self.start = time.perf_counter()
        self.timings: dict[str, float] = {}
        self.notices: list[str] = []  # out-of-memory fallbacks and VAE re-decodes, for the recipe
        # 1. load
        self.model: LoadedModel | None = None
        self.pipe = None
        self.upscaler: tuple | None = None  # (spandrel descriptor, recipe record)
        self.split: refiner.Split | None = None
        self.refiner_model: LoadedModel | None = None
        self.refine = None  # the refiner's pipeline
        self.lora_hashes: dict[str, str] | None = None  # None: no LoRA
        self.job: ImageJob | None = None  # image to image or inpainting (image_job.py); None: text to image
        self.control: ControlJob | None = None  # the ControlNets (control_job.py); None: none
        self.image_prompt: ImagePromptJob | None = None  # the IP-Adapter and its image (image_prompt.py)
        # 2. text, 3. noise
        self.text_kwargs: dict = {}
        self.refiner_text_kwargs: dict = {}  # the SDXL refiner's own (its one encoder, 1280 wide)
        self.seeds: list[int] = []
        self.generators: list = []
        self.noise: dict = {}  # per-image tensors for the pipeline call (the SD families' initial latents)
        # 4. denoise: the pass that runs (its x0 capture, the steps before it, the steps of all passes; None:
        #    the pipeline's own count, known once it runs), its preview decoder and clock
        self.images: list = []
        self.fallbacks: list[str] = []
        self.decoder = None
        self._pacer: PreviewPacer | None = None
        self._x0 = None
        self._offset, self._total = 0, None
        self._denoise_start = self._decode_start = None
        self._handover: list = []  # the base's latents, for the refiner
        # 5. hires fix
        self.hires_record: dict | None = None
        self._hires_done = self._hires_total = 0

    # ---- between the steps ----------------------------------------------------------------------------

    def check_cancel(self) -> None:
        if self.cancel.is_set():
            raise CancelledError("cancelled")

    def timed(self, name: str):
        """A block whose seconds are added to timings[name]."""
        return _timed(self.timings, name)

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def notice(self, stage: str, message: str) -> None:
        """Something the user should know (a memory fallback, a float32 re-decode): a stage line now, and a
        line in the recipe."""
        self.notices.append(message)
        self.emit(StageStarted(stage, message))

    # ---- 1. load: what the model needs for this request ----------------------------------------------

    def set_model(self, model: LoadedModel, upscaler: tuple | None) -> None:
        """The loaded model and the upscaler; the request's sampler; with a refiner, where the steps split
        (refused before the refiner loads when a part would get no step)."""
        self.model, self.pipe, self.upscaler = model, model.pipe, upscaler
        self.family: EngineFamily = for_family(model.family)
        self.pipe.scheduler = self.family.make_scheduler(self.request.sampler, model.base_scheduler_config)
        inputs = load_inputs(self.request)  # the start image and mask, fitted to the request's size
        self.job = make_job(inputs, self.pipe, self.family, self.request.strength)
        self.control = make_control(self.request, model, partial(self._stage, "load"), self.job)
        self.image_prompt = make_image_prompt(self.request, model, partial(self._stage, "load"))
        if inputs is not None:
            self.emit(StageStarted("load", inputs.fitted))
            if inputs.fitted != f"start image {self.request.width}x{self.request.height}":
                self.notices.append(inputs.fitted)
        if self.request.refiner:
            self.split = refiner.split_steps(self.pipe.scheduler, self.request.steps, self.request.refiner_switch)
            refiner.check_split(self.request, self.split)

    def set_refiner(self, loaded: LoadedModel) -> None:
        """The refiner, on the base's schedule, so that it continues exactly where the base stops."""
        self.refiner_model, self.refine = loaded, loaded.pipe
        self.refine.scheduler = self.family.make_scheduler(self.request.sampler, self.model.base_scheduler_config)
        memory.prepare(self.refine, self.device, self.request.width, self.request.height)

    def apply_loras(self) -> None:
        """The request's LoRAs (the same set of files again is not reloaded; another set unloads the old one
        first) and textual inversions; the memory settings for this size."""
        request = self.request
        applied = apply_loras(self.model, request.loras, partial(self._stage, "load"))
        self.lora_hashes = {item.name: item.hash for item in applied if item.hash} if applied else None
        apply_embeddings(self.model, request.prompt, request.negative_prompt)
        memory.prepare(self.pipe, self.device, request.width, request.height)

    def _stage(self, stage: str, detail: str) -> None:
        self.emit(StageStarted(stage, detail))

    # ---- 2. text --------------------------------------------------------------------------------------

    def encode_text(self) -> None:
        """The prompt becomes tokens, and the text encoder turns them into vectors."""
        self.emit(StageStarted("text", token_detail(getattr(self.pipe, "tokenizer", None), self.request.prompt)))
        with self.timed("text"):
            self.text_kwargs = self.family.encode_text(self.pipe, self.request, self.device)
            if self.image_prompt is not None:  # the image's embeddings go wherever the text's go (not the refiner)
                self.text_kwargs.update(self.image_prompt.arguments())
            if self.refine is not None:
                self.refiner_text_kwargs = self.family.encode_text(self.refine, self.request, self.device)
        line = self.family.prompt_notice(self.request)
        if line:  # weighting syntax the family's text encoder cannot take: taken out, and said once
            self.notice("text", line)

    # ---- 3. noise -------------------------------------------------------------------------------------

    def make_noise(self) -> None:
        """One seeded generator per image, so that image k of a batch is reproducible alone with seed + k."""
        request = self.request
        seed = secrets.randbelow(MAX_SEED + 1) if request.seed is None else request.seed
        self.seeds = [(seed + k) % (MAX_SEED + 1) for k in range(request.batch_size)]
        self.emit(StageStarted("noise", f"seed{'s' if len(self.seeds) > 1 else ''} "
                                        f"{', '.join(map(str, self.seeds))}"))
        with self.timed("noise"):
            self.generators = [torch.Generator(_generator_device(self.device)).manual_seed(s) for s in self.seeds]
            # an image job's pipeline draws its noise from the generators, after encoding the start image
            self.noise = {} if self.job else self.family.initial_noise(self.pipe, request, self.generators,
                                                                        self.device)
        for scheduler in (self.pipe.scheduler, getattr(self.refine, "scheduler", None)):
            if hasattr(scheduler, "noise_sampler_seed"):  # DPM++ SDE: its Brownian noise from the seed
                scheduler.noise_sampler_seed = seed

    # ---- 4. denoise (base, then refiner), and the VAE decode ----------------------------------------

    def denoise(self, decoder) -> None:
        """Denoise with a preview of the predicted clean image after each step (``decoder`` None: none); with
        a refiner, the base stops at the switch and hands its latents to the refiner, which finishes and
        decodes. The steps count on across both passes."""
        request = self.request
        self.decoder, self._pacer = decoder, PreviewPacer(self.preview_share)
        steps = (self.job.describe(request.steps, request.strength, request.sampler) if self.job
                 else f"{request.steps} steps, {request.sampler}")
        steps += f", {self.control.describe()}" if self.control else ""
        steps += f", {self.image_prompt.describe()}" if self.image_prompt else ""
        self.emit(StageStarted("denoise", f"{steps}, guidance {request.guidance_scale:g}"))
        self._denoise_start = time.perf_counter()
        self._total = self.split.total if self.split else None
        self.images, self.fallbacks = self._denoise_pass(self.pipe, self._call_base)
        if self.refine is not None:
            detail = refiner.describe(request, self.split, self.refiner_model.display_name)
            self.emit(StageStarted("denoise", detail))
            begin = time.perf_counter()
            self._offset, self._total, self._handover = self.split.base, None, self.images
            self.images, more = self._denoise_pass(self.refine, self._call_refiner)
            self.fallbacks += [name for name in more if name not in self.fallbacks]
            self.timings["refiner"] = (self._decode_start or time.perf_counter()) - begin
        end = time.perf_counter()
        if self._decode_start is None:  # a pipeline that skipped the last callback
            self.timings["denoise"], self._decode_start = end - self._denoise_start, end
        self.timings["decode"] = end - self._decode_start

    def _denoise_pass(self, target, call) -> tuple[list, list[str]]:
        """``call`` on ``target`` (the base's or the refiner's pipeline), with its x0 captured for previews,
        its VAE decode checked, and the memory fallbacks when it runs out of memory."""
        capture = capture_x0(target.scheduler) if self.decoder is not None else nullcontext(None)
        guard = memory.decode_guard(getattr(target, "vae", None), partial(self.notice, "decode"))
        with capture as self._x0, guard:
            return memory.run_with_fallbacks(call, target, self.device, self.request.batch_size,
                                             partial(self.notice, "denoise"))

    def _call_base(self, one_at_a_time: bool) -> list:
        request = self.request
        self._denoise_start, self._decode_start = time.perf_counter(), None  # again after an out-of-memory
        target = self.control.pipe if self.control else self.job.pipe if self.job else self.pipe
        if self.image_prompt is not None:  # again: attention slicing (a memory fallback) replaces its processors
            self.image_prompt.install()
        kwargs = dict(self.text_kwargs, width=request.width, height=request.height,
                      num_inference_steps=request.steps, guidance_scale=request.guidance_scale,
                      output_type="pil", **self.family.step_callback(target, self._step_end))
        kwargs.update(self.family.call_options(self.pipe, request))  # the family's own, over the common ones
        # an image job runs one image at a time: the pipelines draw the start image's encoding, the mask's and the
        # noise from a batch's generators in orders of their own (most encode one start image with the first
        # generator), so only alone is image k of a batch the picture of seed + k
        one_at_a_time = one_at_a_time or self.job is not None
        if not one_at_a_time and not self.family.repeats_given_embeddings and "prompt_embeds" in kwargs:
            # one row per image, and the pipeline told the batch is the prompts' (one image each)
            kwargs = dict(repeat_embeddings(kwargs, len(self.generators)), num_images_per_prompt=1)
        if self.job is not None:  # image to image, inpainting: the start image, strength, mask; pasted back
            call = self.job.arguments(kwargs, target)
            call = self.control.arguments(call) if self.control is not None else call  # with ControlNets
            return self.job.finish(call_batched(target, call, self.generators, one_at_a_time))
        if self.control is not None:  # the ControlNets: their images, weights and ranges
            return call_batched(target, self.control.arguments(kwargs), self.generators, one_at_a_time,
                                **self.noise)
        if self.refine is not None:
            kwargs.update(denoising_end=request.refiner_switch, output_type="latent")
        return call_batched(self.pipe, kwargs, self.generators, one_at_a_time, **self.noise)

    def _call_refiner(self, one_at_a_time: bool) -> list:
        request = self.request
        kwargs = dict(self.refiner_text_kwargs, num_inference_steps=request.steps,
                      guidance_scale=request.guidance_scale, denoising_start=request.refiner_switch,
                      callback_on_step_end=self._step_end, output_type="pil")
        return call_batched(self.refine, kwargs, self.generators, one_at_a_time,
                            image=torch.stack(self._handover))

    def _step_end(self, pipeline, i, t, callback_kwargs) -> dict:
        """diffusers' ``callback_on_step_end``: Progress (with a paced preview), cancel, the decode stage."""
        request, x0 = self.request, self._x0
        step = self._offset + i + 1
        total = self._total or self._offset + (getattr(pipeline, "_num_timesteps", None) or request.steps)
        preview = None
        if self._pacer.step_done() and x0 is not None and x0.latest is not None:
            latents = self.family.preview_latents(pipeline, x0.latest, request.width, request.height)
            preview = self._pacer.decode(self.decoder, latents, (request.width, request.height))
        self.emit(Progress(step, total, preview, self.elapsed(), stage="denoise"))
        self.check_cancel()
        if step == total:  # the pipeline decodes next
            self._decode_start = time.perf_counter()
            self.timings["denoise"] = self._decode_start - self._denoise_start
            self.emit(StageStarted("decode", f"{request.batch_size} image(s) by the VAE"))
        return {}

    # ---- 5. hires fix ---------------------------------------------------------------------------------

    def hires_fix(self, upscalers) -> None:
        """Enlarge (by ``upscalers.enlarge``), then an img2img pass at the larger size with one
        Progress(stage="hires") per step over the batch."""
        request = self.request
        width, height = hires_size(request, self.model)
        info = self.upscaler[1] if self.upscaler is not None else None
        self.emit(StageStarted("upscale", f"hires fix: {request.hires_scale:g}x to {width}x{height} with "
                                          f"{info['name'] if info else 'Lanczos'}"))
        with self.timed("upscale"):
            enlarged = upscalers.enlarge(self.images, self.upscaler, (width, height), self.cancel)
        steps = min(int(request.steps * request.hires_strength), request.steps)
        self.hires_record = {"upscaler": info or "Lanczos", "size": [width, height], "steps": steps,
                               "scale": request.hires_scale, "strength": request.hires_strength}
        if steps == 0:  # strength 0: the enlargement alone
            self.images = enlarged
            return
        self.check_cancel()
        self.emit(StageStarted("hires", f"{steps} steps at strength {request.hires_strength:g}, {width}x{height}"))
        pipe = img2img_pipe(self.pipe)
        self._hires_done, self._hires_total = 0, steps * len(enlarged)
        with self.timed("hires"):
            self.images = [pipe(**self.text_kwargs, image=image, strength=request.hires_strength,
                                num_inference_steps=request.steps, guidance_scale=request.guidance_scale,
                                generator=generator, callback_on_step_end=self._hires_step_end,
                                output_type="pil").images[0]
                           for image, generator in zip(enlarged, self.generators)]

    def _hires_step_end(self, pipeline, i, t, callback_kwargs) -> dict:
        self._hires_done += 1
        self.emit(Progress(min(self._hires_done, self._hires_total), self._hires_total, None, self.elapsed(),
                           stage="hires"))
        self.check_cancel()
        return {}

    # ---- 6. upscale -----------------------------------------------------------------------------------

    def upscale(self, upscalers) -> None:
        """Each image through the upscaler, tile by tile (``upscalers.stage``)."""
        with self.timed("upscale"):
            self.images = upscalers.stage(self.images, self.upscaler, self.emit, self.cancel, self.start)

    # ---- 7. the result --------------------------------------------------------------------------------

    def finished(self) -> Finished:
        """The images with their recipe: the request, the model, the seeds, the timings, and what happened on
        the way (LoRA hashes, memory fallbacks, notices, the refiner, the hires fix, the upscaler)."""
        self.timings["total"] = self.elapsed()
        recipe = make_recipe(
            self.request, self.model, self.seeds, self.timings, self.images,
            lora_hashes=None if self.lora_hashes is None else dict(self.lora_hashes),
            memory_fallbacks=tuple(self.fallbacks), notices=tuple(self.notices),
            refiner_model=(refiner.record(self.request, self.split, self.model, self.refiner_model)
                           if self.refine is not None else None),
            hires=self.hires_record, upscaler=self.upscaler[1] if self.upscaler is not None else None,
            control_models=self.control.records if self.control is not None else (),
            **image_prompt_record(self.image_prompt),
            **(self.job.inputs.record if self.job is not None else {}))
        return Finished(images=self.images, seeds=self.seeds, recipe=recipe, timings=dict(self.timings))


# ---- plain functions ---------------------------------------------------------------------------------


def image_prompt_record(job: ImagePromptJob | None) -> dict:
    """The recipe's ``image_prompt_model`` (the adapter's name, hash and encoder, the image's sha256, the weight)
    for a run with an image prompt."""
    return {} if job is None else {"image_prompt_model": dict(job.record)}


def call_batched(pipe, kwargs: dict, generators: list, one_at_a_time: bool, **per_image) -> list:
    """``pipe(**kwargs)`` on the whole batch, or once per image with its own generator and its slice of each
    ``per_image`` tensor (the initial noise; a refiner's latents). The images, or latents, as a list."""
    if not one_at_a_time:
        kwargs = {"num_images_per_prompt": len(generators), **kwargs}
        return list(pipe(**kwargs, generator=generators, **per_image).images)
    return [image for k, generator in enumerate(generators) for image in pipe(
        **kwargs, num_images_per_prompt=1, generator=generator,
        **{name: value[k:k + 1] for name, value in per_image.items()}).images]


def repeat_embeddings(kwargs: dict, count: int) -> dict:
    """``kwargs`` with each given prompt embedding (and its attention mask) of one row repeated for the ``count``
    images of a batch: the pipelines that take them as they are (SD3, Chroma) do not repeat them themselves."""
    def repeated(name, value):
        given = name.endswith(("prompt_embeds", "attention_mask")) and torch.is_tensor(value)
        return value.repeat_interleave(count, 0) if given and value.shape[0] == 1 else value

    return {name: repeated(name, value) for name, value in kwargs.items()}


def token_detail(tokenizer, prompt: str) -> str:
    """The tokens the text encoder sees (special tokens and weighting syntax left out), as a JSON list. A prompt
    with weighting syntax is encoded in windows (engine/prompt_weights.py), so it is not cut at one window."""
    if tokenizer is None:
        return "[]"
    from desktop_app.engine.prompt_weights import is_plain, plain_text

    if is_plain(prompt):
        ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length)["input_ids"]
    else:
        ids = tokenizer(plain_text(prompt))["input_ids"]
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens([i for i in ids if i not in special])
    return json.dumps(tokens, ensure_ascii=False)


def hires_size(request: GenerationRequest, model: LoadedModel) -> tuple[int, int]:
    """The hires pass's size: width and height times hires_scale, to the model's multiple (the VAE's)."""
    step = model.vae_scale_factor
    return tuple(max(step, round(side * request.hires_scale / step) * step)
                 for side in (request.width, request.height))


def img2img_pipe(pipe):
    """An img2img pipeline sharing ``pipe``'s components (made once per pipe; no extra memory, the modules'
    dtypes kept: image_job.twin)."""
    image_to_image, _ = job_classes(type(pipe).__name__)
    if image_to_image is None:
        raise RequestError("hires_scale", f"the hires fix needs an image-to-image pipeline; diffusers has none "
                                          f"for {type(pipe).__name__}")
    return twin(pipe, image_to_image)


def make_recipe(request: GenerationRequest, model: LoadedModel, seeds: list[int], timings: dict,
                images: list, **records) -> Recipe:
    """The run's Recipe: the request (with the first image's seed), the model, the seeds, the timings
    (rounded), the output size; ``records`` are the rest of its fields (lora_hashes, hires ...)."""
    return Recipe(
        request=request.with_seed(seeds[0]), seeds=tuple(seeds), model_name=model.display_name,
        family=model.family, device=str(model.device), dtype=str(model.dtype).removeprefix("torch."),
        app_version=desktop_app.__version__, timings={k: round(v, 4) for k, v in timings.items()},
        output_size=tuple(images[0].size) if images else None,
        model_hash=model_hash(model.path) or None,  # hashed once per model, then cached
        components=getattr(model, "components_record", None),  # hashed once, when the model loaded
        **records)


def _generator_device(device: torch.device) -> str:
    # MPS generators are not reproducible across runs on every macOS; CPU noise is the diffusers advice there
    return "cpu" if device.type == "mps" else str(device)


@contextmanager
def _timed(timings: dict, name: str):
    """Adds the block's seconds to timings[name]."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start

"""The Engine: one loaded model, and ``run(request, emit, cancel)`` that turns a request into images.

The stages, each announced with StageStarted, follow the diffusers pipeline: load, text, noise, denoise,
decode, upscale. With an SDXL refiner (refiner.py) "denoise" is announced twice, for the base's part of the
schedule and for the refiner's, and the steps count on across both. Cancel is checked at every step; a
private exception raised in ``callback_on_step_end`` stops the pipeline at once (diffusers' own ``_interrupt``
would still run the VAE decode).
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

# first: no collector pauses while torch and diffusers import (see there)
from desktop_app.engine import import_guard

import torch

import desktop_app

from desktop_app.engine import device as devices
from desktop_app.engine import memory, refiner, upscale_job
from desktop_app.errors import CancelledError, RequestError
from desktop_app.engine.events import Cancelled, Emit, Finished, Progress, StageStarted
from desktop_app.engine.loader import LoadedModel, load_model
from desktop_app.engine.lora import apply_embeddings, apply_loras
from desktop_app.models.model_folder import check_folder, display_name, is_embedded, read_index
from desktop_app.models.model_hash import model_hash
from desktop_app.engine.preview import DEFAULT_PREVIEW_SHARE, PreviewPacer, capture_x0, make_decoder
from desktop_app.engine.request import MAX_SEED, GenerationRequest
from desktop_app.engine.samplers import make_scheduler
from desktop_app.engine.upscale import DEFAULT_TILE

EMBEDDED_UPSCALER = "default"


class _Stop(Exception):
    """Raised inside the step callback to stop the pipeline at once. Never leaves this module."""


class Engine:
    """Holds at most one loaded model (and the upscalers it used). Not thread-safe: one worker thread."""

    def __init__(self, device: str = "auto", preview_share: float | None = DEFAULT_PREVIEW_SHARE,
                 preview_mode: str = "auto"):
        """``preview_share``: the most that live previews may add to the denoising time (None: a preview
        after every step, whatever it costs). ``preview_mode``: see ``preview_decoder``."""
        self._choice = devices.resolve(device)
        self.preview_share = preview_share
        self.preview_mode = preview_mode
        self._preview: tuple = (None, {})  # (model, {mode: decoder})
        self.model: LoadedModel | None = None
        self._upscalers: dict[str, object] = {}
        self._refiner: tuple | None = None  # (the name asked for, the base it shares with, its LoadedModel)

    # ---- model management --------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self._choice.device

    @property
    def dtype(self) -> torch.dtype:
        return self._choice.dtype

    def describe_device(self) -> str:
        return self._choice.describe()

    def set_device(self, name: str) -> None:
        """Switch device ("auto", "cpu", "cuda", "mps"); the model reloads at the next run."""
        choice = devices.resolve(name)
        if choice != self._choice:
            self.unload()
            self._choice = choice

    def load(self, name: str, emit: Emit | None = None) -> LoadedModel:
        """The loaded model for ``name``, loading it (and freeing the previous one) when needed."""
        if self.model is not None and self.model.name == name and self.model.device == self.device:
            return self.model
        folder = check_folder(name)  # a missing model is reported before the "load" stage shows
        dtype = self.dtype
        if dtype == torch.float16 and is_embedded(read_index(folder)):
            # the embedded model is small enough for float32 anywhere, and float16's range is too narrow for
            # its cosine schedule (Euler starts from sigma ~2e4); GPUs with bfloat16 never get here
            dtype = torch.float32
        self.unload()
        if emit is not None:
            emit(StageStarted("load", f"{display_name(name)} on {devices.describe(self.device, dtype)}"))
        import_guard.preload(is_embedded(read_index(folder)))  # lazy imports without collector pauses
        self.model = load_model(name, self.device, dtype)
        return self.model

    def unload(self) -> None:
        if self.model is None and not self._upscalers and self._refiner is None:
            return
        self.model = None
        self._refiner = None  # it shares the model's VAE and text encoder: it goes with it
        self._preview = (None, {})  # its decoders hold the model's VAE
        self._upscalers.clear()
        memory.free(self.device)

    def load_refiner(self, name: str, model: LoadedModel, emit: Emit | None = None) -> LoadedModel:
        """The SDXL refiner ``name`` for the base ``model``, kept beside it until unload() or until another
        refiner is asked for (then the old one is freed first). See refiner.load for the errors."""
        held = self._refiner
        if held is not None and held[0] == name and held[1] is model:
            return held[2]
        if held is not None:
            self._refiner = held = None
            memory.free(self.device)
        loaded = refiner.load(name, model, emit)
        self._refiner = (name, model, loaded)
        return loaded

    def upscaler(self, choice: str, model: LoadedModel):
        """(spandrel descriptor, recipe record) for request.upscale: "default" (the model folder's own), a
        file path, or a file name in the user's upscalers folder (see upscaler_files)."""
        return upscale_job.get_upscaler(self, choice, model)

    def upscale(self, source, model: str = EMBEDDED_UPSCALER, scale: float | None = None,
                tile: int | None = DEFAULT_TILE, emit: Emit | None = None,
                cancel: threading.Event | None = None, model_folder: Path | str | None = None) -> Finished | None:
        """Upscale one image (a file path, or a PIL image) as a job of its own. ``model``: "default" (the
        upscaler of ``model_folder``, else of the loaded model, else the embedded model's), a file, or a name
        in the upscalers folder; ``scale``: the model's own when None, or from 1 up to it (Lanczos shrinks
        the model's result); ``tile``: input pixels a side (0: untiled). Emits "load" and "upscale" stages
        and one Progress(stage="upscale") per tile; returns Finished (one image; recipe["job"] == "upscale")
        or None after emitting Cancelled. RequestError/ModelError for a bad file, option or model."""
        return upscale_job.run_job(self, source, model, scale, tile, emit, cancel, model_folder)

    def preview_decoder(self, model: LoadedModel):
        """The preview decoder for ``model`` under ``self.preview_mode``, made once per model and mode:
        "auto": the map fitted to the model's VAE when one is shipped or cached (a fraction of a
        millisecond), else ``make_decoder``'s choice; "fitted": that map, fitted now if there is none
        (seconds; cached for next time); "vae" / "linear": ``make_decoder``'s choice (the small VAE, or the
        published factors) / always the published factors."""
        held, decoders = self._preview
        if held is not model:
            decoders = {}
            self._preview = (model, decoders)
        if self.preview_mode in decoders:
            return decoders[self.preview_mode]
        from desktop_app.engine import preview_fit
        from desktop_app.engine.preview import SD1_BIAS, SD1_FACTORS, SDXL_BIAS, SDXL_FACTORS, LinearPreview

        mode = self.preview_mode
        decoder = None
        if mode in ("auto", "fitted"):
            decoder = preview_fit.find(model.path)
        if decoder is None and mode == "fitted":
            decoder, _ = preview_fit.fit_and_cache(model)
        if decoder is None and mode == "linear":
            sdxl = model.family == "sdxl"
            decoder = LinearPreview(SDXL_FACTORS if sdxl else SD1_FACTORS, SDXL_BIAS if sdxl else SD1_BIAS)
        if decoder is None:
            decoder = make_decoder(model.pipe, model.family)
        decoders[mode] = decoder
        return decoder

    # ---- generation --------------------------------------------------------------------------------

    def run(self, request: GenerationRequest, emit: Emit,
            cancel: threading.Event | None = None) -> Finished | None:
        """Generate ``request``: stages and per-step Progress go to ``emit``; the result is returned (not
        emitted). Returns None after emitting Cancelled when ``cancel`` is set. EngineErrors (RequestError,
        ModelError) propagate with a readable message; the caller turns them into Failed or an exit code."""
        cancel = cancel or threading.Event()
        start = time.perf_counter()
        timings: dict[str, float] = {}

        def cancelled() -> None:
            emit(Cancelled())

        if cancel.is_set():
            return cancelled()

        # 1. load the model (only when it changed), then check the request against it
        with _timed(timings, "load"):
            model = self.load(request.model, emit)
        check_request(request, model)
        upscaler = self.upscaler(request.upscale, model) if request.upscale else None
        pipe = model.pipe
        pipe.scheduler = make_scheduler(request.sampler, model.base_scheduler_config)
        split, refiner_model, refine = None, None, None
        if request.refiner:  # the base's share of the steps and the refiner's, then the refiner itself
            split = refiner.split_steps(pipe.scheduler, request.steps, request.refiner_switch)
            refiner.check_split(request, split)
            with _timed(timings, "load"):
                refiner_model = self.load_refiner(request.refiner, model, emit)
            refine = refiner_model.pipe
            # the base's schedule, so that the refiner continues exactly where the base stops
            refine.scheduler = make_scheduler(request.sampler, model.base_scheduler_config)
            memory.prepare(refine, self.device, request.width, request.height)
        # the same set of LoRA files again is not reloaded; another set unloads the old one first
        applied_loras = apply_loras(model, request.loras, lambda text: emit(StageStarted("load", text)))
        apply_embeddings(model, request.prompt, request.negative_prompt)
        memory.prepare(pipe, self.device, request.width, request.height)
        notices: list[str] = []
        if cancel.is_set():
            return cancelled()

        with torch.inference_mode():
            # 2. the prompt becomes tokens, and the text encoder turns them into vectors
            emit(StageStarted("text", token_detail(getattr(pipe, "tokenizer", None), request.prompt)))
            with _timed(timings, "text"):
                text_kwargs = encode_text(pipe, request, self.device)

            # 3. one seeded generator per image, so image k of a batch is reproducible alone with seed + k
            seed = secrets.randbelow(MAX_SEED + 1) if request.seed is None else request.seed
            seeds = [(seed + k) % (MAX_SEED + 1) for k in range(request.batch_size)]
            emit(StageStarted("noise", f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"))
            with _timed(timings, "noise"):
                generators = [torch.Generator(_generator_device(self.device)).manual_seed(s) for s in seeds]
                latents = initial_noise(pipe, request, generators, self.device)
            for scheduler in (pipe.scheduler, getattr(refine, "scheduler", None)):
                if hasattr(scheduler, "noise_sampler_seed"):  # DPM++ SDE: its Brownian noise from the seed
                    scheduler.noise_sampler_seed = seed
            if cancel.is_set():
                return cancelled()

            # 4. denoise, with a preview of the predicted clean image after each step; with a refiner, the
            #    base stops at the switch and hands its latents to the refiner, which finishes and decodes
            decoder = self.preview_decoder(model) if request.preview else None
            emit(StageStarted("denoise", f"{request.steps} steps, {request.sampler}, "
                                         f"guidance {request.guidance_scale:g}"))
            denoise_start = time.perf_counter()
            decode_start = [None]
            pacer = PreviewPacer(self.preview_share)
            # the pass that runs: its x0 capture, the steps before it, the steps of all passes (None: the
            # pipeline's own count, known once it runs)
            current = {"x0": None, "offset": 0, "total": split.total if split else None}

            def on_step_end(pipeline, i, t, callback_kwargs):
                x0, step = current["x0"], current["offset"] + i + 1
                total = current["total"] or current["offset"] + (getattr(pipeline, "_num_timesteps", None)
                                                                 or request.steps)
                preview = None
                if pacer.step_done() and x0 is not None and x0.latest is not None:
                    preview = pacer.decode(decoder, x0.latest, (request.width, request.height))
                emit(Progress(step, total, preview, time.perf_counter() - start))
                if cancel.is_set():
                    raise _Stop
                if step == total:  # the pipeline decodes next
                    decode_start[0] = time.perf_counter()
                    timings["denoise"] = decode_start[0] - denoise_start
                    emit(StageStarted("decode", f"{request.batch_size} image(s) by the VAE"))
                return {}

            def call_pipe(one_at_a_time: bool) -> list:
                nonlocal denoise_start
                denoise_start, decode_start[0] = time.perf_counter(), None
                kwargs = dict(text_kwargs, width=request.width, height=request.height,
                              num_inference_steps=request.steps, guidance_scale=request.guidance_scale,
                              callback_on_step_end=on_step_end, output_type="pil")
                if refine is not None:
                    kwargs.update(denoising_end=request.refiner_switch, output_type="latent")
                return call_batched(pipe, kwargs, generators, one_at_a_time, latents=latents)

            def call_refiner(one_at_a_time: bool) -> list:
                kwargs = dict(text_kwargs, num_inference_steps=request.steps,
                              guidance_scale=request.guidance_scale, denoising_start=request.refiner_switch,
                              callback_on_step_end=on_step_end, output_type="pil")
                return call_batched(refine, kwargs, generators, one_at_a_time, image=torch.stack(images))

            def notice(stage: str):
                def say(message: str) -> None:
                    notices.append(message)
                    emit(StageStarted(stage, message))
                return say

            def denoise(target, call) -> tuple[list, list[str]]:
                capture = capture_x0(target.scheduler) if decoder is not None else nullcontext(None)
                with capture as current["x0"], memory.decode_guard(getattr(target, "vae", None), notice("decode")):
                    return memory.run_with_fallbacks(call, target, self.device, request.batch_size,
                                                     notice("denoise"))

            try:
                images, fallbacks = denoise(pipe, call_pipe)
                if refine is not None:
                    emit(StageStarted("denoise", refiner.describe(request, split, refiner_model.display_name)))
                    begin = time.perf_counter()
                    current.update(offset=split.base, total=None)
                    images, more = denoise(refine, call_refiner)
                    fallbacks += [name for name in more if name not in fallbacks]
                    timings["refiner"] = (decode_start[0] or time.perf_counter()) - begin
            except _Stop:
                return cancelled()
            end = time.perf_counter()
            if decode_start[0] is None:  # a pipeline that skipped the last callback
                timings["denoise"], decode_start[0] = end - denoise_start, end
            timings["decode"] = end - decode_start[0]

            # 5. upscale (tile by tile); or, with the hires fix, enlarge and re-draw detail by img2img
            extra = {}
            if applied_loras:
                extra["lora_hashes"] = {item.name: item.hash for item in applied_loras if item.hash}
            if fallbacks:
                extra["memory_fallbacks"] = list(fallbacks)
            if notices:
                extra["notices"] = list(notices)
            if refine is not None:
                extra["refiner_model"] = refiner.record(request, split, model, refiner_model)
            if upscaler is not None or request.hires_scale:
                if cancel.is_set():
                    return cancelled()
                try:
                    if request.hires_scale:
                        images, extra["hires"] = upscale_job.hires_fix(
                            model, request, images, text_kwargs, generators, upscaler, emit, cancel, start,
                            timings)
                    else:
                        with _timed(timings, "upscale"):
                            images = upscale_job.upscale_stage(images, *upscaler, emit, cancel, start)
                except CancelledError:
                    return cancelled()
                if upscaler is not None:
                    extra["upscaler"] = upscaler[1]

        timings["total"] = time.perf_counter() - start
        recipe = make_recipe(request, model, seeds, timings, images) | extra
        return Finished(images=images, seeds=seeds, recipe=recipe, timings=dict(timings))


# ---- the steps, as plain functions -------------------------------------------------------------------


def check_request(request: GenerationRequest, model: LoadedModel) -> None:
    """What the request checks alone cannot know: the model's size rules and features."""
    scale = model.vae_scale_factor
    limits = model.limits
    low, high = int(limits.get("min_size", scale)), int(limits.get("max_size", 2048))
    for name in ("width", "height"):
        value = getattr(request, name)
        if value % scale or not low <= value <= high:
            raise RequestError(name, f"must be a multiple of {scale} from {low} to {high} for the model "
                                     f"{model.display_name}, got {value}")
    if request.hires_scale and model.family == "embedded":
        raise RequestError("hires_scale", f"the hires fix is for Stable Diffusion models; the model "
                                          f"{model.display_name} draws at one size: use its upscaler instead")
    refiner.check_models(request, model)


def call_batched(pipe, kwargs: dict, generators: list, one_at_a_time: bool, **per_image) -> list:
    """``pipe(**kwargs)`` on the whole batch, or once per image with its own generator and its slice of each
    ``per_image`` tensor (the initial noise; a refiner's latents). The images, or latents, as a list."""
    if not one_at_a_time:
        return list(pipe(**kwargs, num_images_per_prompt=len(generators), generator=generators,
                         **per_image).images)
    return [image for k, generator in enumerate(generators) for image in pipe(
        **kwargs, num_images_per_prompt=1, generator=generator,
        **{name: value[k:k + 1] for name, value in per_image.items()}).images]


def token_detail(tokenizer, prompt: str) -> str:
    """The tokens the text encoder sees (special tokens left out), as a JSON list."""
    if tokenizer is None:
        return "[]"
    ids = tokenizer(prompt, truncation=True, max_length=tokenizer.model_max_length)["input_ids"]
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens([i for i in ids if i not in special])
    return json.dumps(tokens, ensure_ascii=False)


def encode_text(pipe, request: GenerationRequest, device: torch.device) -> dict:
    """Prompt embeddings for the pipeline call, so that the text stage is timed on its own. Pipelines with
    another encode_prompt signature (SDXL) get the prompts and encode them themselves."""
    from diffusers import StableDiffusionPipeline

    if not isinstance(pipe, StableDiffusionPipeline):
        return {"prompt": request.prompt, "negative_prompt": request.negative_prompt or None}
    guided = request.guidance_scale > 1 and pipe.unet.config.time_cond_proj_dim is None
    positive, negative = pipe.encode_prompt(
        request.prompt, device, num_images_per_prompt=1, do_classifier_free_guidance=guided,
        negative_prompt=request.negative_prompt or None)
    kwargs = {"prompt_embeds": positive}
    if negative is not None:
        kwargs["negative_prompt_embeds"] = negative
    return kwargs


def initial_noise(pipe, request: GenerationRequest, generators: list, device: torch.device) -> torch.Tensor:
    """Unit-variance latent noise, one item per generator (the pipeline scales it by init_noise_sigma)."""
    from diffusers.utils.torch_utils import randn_tensor

    scale = pipe.vae_scale_factor
    shape = (len(generators), pipe.unet.config.in_channels, request.height // scale, request.width // scale)
    return randn_tensor(shape, generator=generators, device=device, dtype=pipe.unet.dtype)


def make_recipe(request: GenerationRequest, model: LoadedModel, seeds: list[int], timings: dict,
                images: list) -> dict:
    recipe = request.to_dict()
    recipe.update(
        seed=seeds[0], seeds=list(seeds), model_name=model.display_name, family=model.family,
        device=str(model.device), dtype=str(model.dtype).removeprefix("torch."),
        app_version=desktop_app.__version__, timings={k: round(v, 4) for k, v in timings.items()},
    )
    if images:
        recipe["output_size"] = list(images[0].size)
    digest = model_hash(model.path)  # hashed once per model, then cached
    if digest:
        recipe["model_hash"] = digest
    return recipe


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


import_guard.release()  # the engine's imports are done: see import_guard

"""The Engine: one loaded model, ``run(request, emit, cancel)`` that turns a request into images, and
``upscale(request, emit, cancel)`` that enlarges one image.

``run`` reads as numbered steps, as a diffusers pipeline's ``__call__`` does; the steps are methods of a
per-run object (run_steps.GenerationRun). The stages, each announced with StageStarted, follow the diffusers
pipeline: load, text, noise, denoise, decode, then the hires fix or the upscale. With an SDXL refiner
(refiner.py) "denoise" is announced twice, for the base's part of the schedule and for the refiner's, and the
steps count on across both. Cancel is checked at every step (see run_steps). Every job ends with exactly one
terminal event: Finished, Cancelled or Failed (outcome.py).
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path

# first: no collector pauses while torch and diffusers import (see there)
from desktop_app.engine import import_guard

import torch

from desktop_app.engine import device as devices
from desktop_app.engine import control_job, memory, refiner
from desktop_app.errors import RequestError
from desktop_app.engine.events import Emit, Finished, StageStarted
from desktop_app.engine.loader import LoadedModel, load_model
from desktop_app.engine.memory_plan import MemoryPlan
from desktop_app.models.model_folder import check_folder, display_name, is_embedded, read_index
from desktop_app.engine.outcome import Outcome
from desktop_app.engine.preview import DEFAULT_PREVIEW_SHARE, make_decoder
from desktop_app.engine.request import GenerationRequest, UpscaleRequest
from desktop_app.engine.families import for_family
from desktop_app.engine.run_steps import GenerationRun
from desktop_app.engine.upscale_job import Upscalers


class Engine:
    """Holds at most one loaded model (and the upscalers it used). Not thread-safe: one worker thread."""

    def __init__(self, device: str = "auto", preview_share: float | None = DEFAULT_PREVIEW_SHARE,
                 preview_mode: str = "auto", weights: str = "auto"):
        """``preview_share``: the most that live previews may add to the denoising time (None: a preview
        after every step, whatever it costs). ``preview_mode``: see ``preview_decoder``. ``weights``: how the
        denoiser's weights are stored, see ``set_weights``."""
        self._choice = devices.resolve(device)
        self.preview_share = preview_share
        self.preview_mode = preview_mode
        self.weights = _checked_weights(weights)
        self._preview: tuple = (None, {})  # (model, {mode: decoder})
        self.model: LoadedModel | None = None
        self.plan: MemoryPlan | None = None  # the loaded model's memory plan
        self._upscalers = Upscalers(self)  # the upscaler models it loaded, by file
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

    def set_weights(self, mode: str) -> None:
        """How the denoiser's weights are stored (memory_plan.WEIGHTS): "auto" (fp8 on CUDA when the model fits
        on the GPU only so), "full" (the load dtype), "fp8" (float8, cast up layer by layer as it runs; CUDA and
        the CPU). A model whose storage the new setting changes loads again at the next run."""
        mode = _checked_weights(mode)
        held = self.plan
        if mode != self.weights and held is not None and (held.fp8 or mode == "fp8"):
            self.unload()
        self.weights = mode

    def load(self, name: str, emit: Emit | None = None,
             size: tuple[int, int, int] = (1024, 1024, 1)) -> LoadedModel:
        """The loaded model for ``name``, loading it (and freeing the previous one) when needed, with its memory
        plan (memory_plan.py: chosen before it loads, for images of ``size``: width, height, batch) applied."""
        held = self.model
        if held is not None and held.name == name and held.device == self.device:
            # a transformer file loads again when other components were named for it since (compared by the
            # folder named; checked in full only when it changed)
            if held.components is None or _named_components(held) == held.components:
                return held
        folder = check_folder(name)  # a missing model is reported before the "load" stage shows
        parts = _components_for(folder)  # a transformer file's text encoders and VAE, as named now
        dtype = self.dtype
        if self.device.type == "cpu":  # bfloat16 for a large model on a CPU with bf16 units (device.py)
            dtype = devices.dtype_for_model(self._choice, _largest_component(folder, parts))
        if dtype == torch.float16 and is_embedded(read_index(folder)):
            # the embedded model is small enough for float32 anywhere, and float16's range is too narrow for
            # its cosine schedule (Euler starts from sigma ~2e4); GPUs with bfloat16 never get here
            dtype = torch.float32
        self.unload()
        plan = memory.plan_for(folder, self.device, dtype, *size, components=parts, weights=self.weights)
        if emit is not None:
            told = f"; {plan.told()}" if self.device.type == "cuda" or self.weights == "fp8" else ""
            emit(StageStarted("load", f"{display_name(name)} on {devices.describe(self.device, dtype)}{told}"))
        import_guard.preload(is_embedded(read_index(folder)))  # lazy imports without collector pauses
        # an offloading plan loads on the CPU: the weights go to the device part by part as they run
        # fp8 weights too: they become fp8 on the CPU, then go to the device at half the size
        on_cpu = plan.offloads or plan.fp8
        self.model = load_model(name, "cpu" if on_cpu else self.device, dtype, components_dir=parts)
        memory.apply_plan(self.model.pipe, plan, self.device)
        self.plan = plan
        if self.model.device != self.device:
            self.model.device = self.device
            if self.model.upscaler is not None:
                self.model.upscaler.to(self.device)
        return self.model

    def unload(self) -> None:
        if self.model is None and not self._upscalers and self._refiner is None:
            return
        self.model, self.plan = None, None
        self._refiner = None  # it shares the model's VAE and text encoder: it goes with it
        self._preview = (None, {})  # its decoders hold the model's VAE
        self._upscalers.clear()
        control_job.free()  # the ControlNets loaded for the model
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

    def upscale(self, request: UpscaleRequest, emit: Emit | None = None,
                cancel: threading.Event | None = None) -> Finished | None:
        """Upscale one image (``request.source``: a file path, or a PIL image) as a job of its own.
        ``request.model``: "default" (the upscaler of ``request.model_folder``, else of the loaded model, else
        the embedded model's), a file, or a name in the upscalers folder; ``scale``: the model's own when
        None, or from 1 up to it (Lanczos shrinks the model's result); ``tile``: input pixels a side (0:
        untiled). Emits "load" and "upscale" stages, one Progress(stage="upscale") per tile, then exactly
        one terminal event. Returns Finished (one image; an UpscaleRecipe), or None when
        cancelled. RequestError/ModelError (after Failed) for a bad file, option or model; a bad file or
        option is refused before any upscaler loads."""
        emit = emit or _ignore
        with Outcome(emit) as outcome:
            if not isinstance(request, UpscaleRequest):
                raise TypeError(f"Engine.upscale takes an UpscaleRequest, got {type(request).__name__}")
            outcome.result = self._upscalers.job(request, emit, cancel or threading.Event())
        return outcome.result

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
        from desktop_app.engine.preview import LinearPreview, linear_factors

        mode = self.preview_mode
        decoder = None
        if mode in ("auto", "fitted"):
            decoder = preview_fit.find(model.path)
        if decoder is None and mode == "fitted":
            decoder, _ = preview_fit.fit_and_cache(model)
        if decoder is None and mode == "linear":
            decoder = LinearPreview(*linear_factors(model.family))
        if decoder is None:
            own = for_family(model.family).preview_decoder(model.pipe)  # Qwen-Image's normalised VAE
            decoder = own or make_decoder(model.pipe, model.family)
        decoders[mode] = decoder
        return decoder

    # ---- generation --------------------------------------------------------------------------------

    def run(self, request: GenerationRequest, emit: Emit,
            cancel: threading.Event | None = None) -> Finished | None:
        """Generate ``request``: stages and per-step Progress go to ``emit``, then exactly one terminal event
        (Finished, Cancelled or Failed). Returns the Finished, or None when ``cancel`` was set. EngineErrors
        (RequestError, ModelError, OutOfMemory) propagate with a readable message after Failed."""
        run = GenerationRun(request, emit, cancel, self.device, self.preview_share)
        with Outcome(emit) as outcome:
            run.check_cancel()

            # 1. load the model (only when it changed) and check the request against it; the upscaler, the
            #    sampler, the refiner, the LoRAs
            with run.timed("load"):
                model = self.load(request.model, emit, (request.width, request.height, request.batch_size))
            check_request(request, model)
            if self.plan is not None and (self.plan.offloads or self.plan.fp8):
                run.notice("load", self.plan.told())
            run.set_model(model, self._upscalers.get(request.upscale, model) if request.upscale else None)
            if request.refiner:
                with run.timed("load"):
                    run.set_refiner(self.load_refiner(request.refiner, model, emit))
            run.apply_loras()
            run.check_cancel()

            with torch.inference_mode():
                # 2. text: the prompt becomes tokens, and the text encoder turns them into vectors
                run.encode_text()

                # 3. noise: one seeded generator per image
                run.make_noise()
                run.check_cancel()

                # 4. denoise (the base, then the refiner), previews after each step, then the VAE decode
                run.denoise(self.preview_decoder(model) if request.preview else None)

                # 5. hires fix: enlarge, and re-draw detail by img2img at the larger size
                if request.hires_scale:
                    run.check_cancel()
                    run.hires_fix(self._upscalers)

                # 6. upscale, tile by tile
                elif run.upscaler is not None:
                    run.check_cancel()
                    run.upscale(self._upscalers)

            # 7. the result and its recipe
            outcome.result = with_memory_plan(run.finished(), memory.plan_of(model.pipe))
        return outcome.result


# ---- the checks that need the model --------------------------------------------------------------------


def check_request(request: GenerationRequest, model: LoadedModel) -> None:
    """What the request checks alone cannot know: the model's size rules and features."""
    family = for_family(model.family)
    scale = family.size_multiple(model.pipe)
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
    problem = family.unsupported(request)
    if problem is not None:
        raise RequestError(*problem)


def with_memory_plan(finished: Finished, plan: str | None) -> Finished:
    """``finished`` with the memory plan's name in its recipe."""
    return dataclasses.replace(finished, recipe=dataclasses.replace(finished.recipe, memory_plan=plan))


def _checked_weights(mode: str) -> str:
    from desktop_app.engine.memory_plan import WEIGHTS

    if mode not in WEIGHTS:
        raise RequestError("weights", f"must be one of {', '.join(WEIGHTS)}, got {mode!r}")
    return mode


def _components_for(path: Path) -> Path | None:
    """A transformer file's components folder as named now (this run's or the library's), checked; None for a
    folder or another kind of file. Naming another folder makes the next load() load the model again."""
    from desktop_app.models import components

    return components.check_model(path) if path.is_file() else None


def _named_components(model: LoadedModel) -> Path | None:
    """The components folder named for a loaded transformer file now (this run's or the library's), resolved."""
    from desktop_app.models import components

    named = components.folder_for(model.path, model.family)
    return None if named is None else Path(named).expanduser().resolve()


def _largest_component(folder: Path, parts: Path | None) -> int | None:
    """The bytes of the model's largest component at float32 (its denoiser), from the files' headers."""
    from desktop_app.engine.memory_plan import weights_on_disk

    try:
        return max(weights_on_disk(folder, 4, parts).components.values(), default=None)
    except (OSError, ValueError):
        return None


def _ignore(event) -> None:
    pass


import_guard.release()  # the engine's imports are done: see import_guard

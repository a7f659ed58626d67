"""Upscaling for the Engine: which upscaler a name means (cached per engine), the upscale stage of a
generation, the hires fix, and upscaling as a job of its own (``Engine.upscale``).

The hires fix, as users know it from AUTOMATIC1111: the decoded image is enlarged ``hires_scale`` times (by
the upscaler the request names, or Lanczos when it names none), then a short img2img pass at the larger size
re-draws fine detail; ``hires_strength`` (0..1) is the share of the denoising schedule that pass runs. With
the hires fix on, the named upscaler serves that enlargement and there is no separate upscale stage after it.
"""

from __future__ import annotations

import threading
import time
import weakref
from pathlib import Path

import torch
from PIL import Image, ImageOps

import desktop_app

from desktop_app.models import upscaler_files
from desktop_app.errors import CancelledError, RequestError
from desktop_app.engine.events import Cancelled, Emit, Finished, Progress, StageStarted
from desktop_app.engine.upscale import (
    DEFAULT_TILE, check_scale, check_size, check_tile, describe_upscaler, lanczos, load_upscaler, open_image,
    output_size, plan, upscale_image,
)

_img2img: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # text-to-image pipe -> its img2img twin


# ---- which upscaler --------------------------------------------------------------------------------------


def get_upscaler(engine, choice: str, model=None, field: str = "upscale", folder: Path | None = None):
    """(descriptor, recipe record) for ``choice``, loaded once per file on ``engine``'s device.

    With ``model`` (a generation): "default" is that model's own upscaler, and a model without one is a
    RequestError. Without (an upscale job): "default" is the upscaler of ``folder``, else of the loaded
    model, else the embedded default model's, the first that has one."""
    if choice == upscaler_files.DEFAULT_UPSCALER and model is not None:
        if model.upscaler is None:
            raise RequestError(field, f"the model {model.display_name} has no embedded upscaler; give the "
                                      "path or name of an upscaler file instead")
        path = upscaler_files.resolve(choice, model.path, field)
        return model.upscaler, describe_upscaler(model.upscaler, choice, path)
    if choice == upscaler_files.DEFAULT_UPSCALER:
        path = _default_path(engine, folder, field)
        loaded = engine.model
        if loaded is not None and loaded.upscaler is not None and path == _own_upscaler(loaded):
            return loaded.upscaler, describe_upscaler(loaded.upscaler, choice, path)
    else:
        path = upscaler_files.resolve(choice, None, field)
    key = (str(path.resolve()), path.stat().st_mtime_ns)
    cache = engine._upscalers
    if key not in cache:
        descriptor = load_upscaler(path, engine.device, engine.dtype)
        cache[key] = (descriptor, describe_upscaler(descriptor, choice, path))
    descriptor, info = cache[key]
    return descriptor, info | {"name": upscaler_files.display_name(choice, path)}


def _default_path(engine, folder: Path | None, field: str = "upscale") -> Path:
    loaded = engine.model
    candidates = [where for where in (folder, loaded.path if loaded is not None else None) if where]
    for where in candidates:
        try:
            return upscaler_files.resolve(upscaler_files.DEFAULT_UPSCALER, where, field)
        except RequestError:
            pass
    return upscaler_files.resolve(upscaler_files.DEFAULT_UPSCALER, None, field)  # the embedded model's


def _own_upscaler(model) -> Path | None:
    from desktop_app.models.model_folder import upscaler_path

    return upscaler_path(model.path)


# ---- the upscale stage of a generation ----------------------------------------------------------------


def upscale_stage(images: list, descriptor, info: dict, emit: Emit, cancel: threading.Event, start: float,
                  tile: int | None = DEFAULT_TILE) -> list:
    """Each image through the upscaler, tile by tile, with one Progress(stage="upscale") per tile over the
    whole batch. Raises CancelledError between tiles."""
    first = images[0]
    scale = int(descriptor.scale)
    emit(StageStarted("upscale", f"{scale}x to {first.width * scale}x{first.height * scale} with "
                                 f"{info['name']}"))
    totals = [plan(descriptor, image, tile) for image in images]
    grand_total, offset = sum(totals), 0
    result = []
    for image, total in zip(images, totals):
        def progress(done: int, _total: int, offset=offset) -> None:
            emit(Progress(offset + done, grand_total, None, time.perf_counter() - start, stage="upscale"))

        result.append(upscale_image(descriptor, image, tile=tile, progress=progress, cancel=cancel))
        offset += total
    return result


# ---- hires fix -----------------------------------------------------------------------------------------


def hires_size(request, model) -> tuple[int, int]:
    """The hires pass's size: width and height times hires_scale, to the model's multiple (the VAE's)."""
    step = model.vae_scale_factor
    return tuple(max(step, round(side * request.hires_scale / step) * step)
                 for side in (request.width, request.height))


def img2img_pipe(pipe):
    """An img2img pipeline sharing ``pipe``'s components (made once per pipe; no extra memory)."""
    twin = _img2img.get(pipe)
    if twin is None:
        from diffusers import AutoPipelineForImage2Image

        twin = AutoPipelineForImage2Image.from_pipe(pipe)
        if hasattr(twin, "set_progress_bar_config"):
            twin.set_progress_bar_config(disable=True)
        _img2img[pipe] = twin
    twin.scheduler = pipe.scheduler  # the request's sampler
    return twin


def hires_fix(model, request, images: list, text_kwargs: dict, generators: list, upscaler, emit: Emit,
              cancel: threading.Event, start: float, timings: dict) -> tuple[list, dict]:
    """Enlarge, then an img2img pass at the larger size; (images, recipe record). Raises CancelledError."""
    width, height = hires_size(request, model)
    descriptor, info = upscaler if upscaler is not None else (None, None)
    name = info["name"] if info else "Lanczos"
    emit(StageStarted("upscale", f"hires fix: {request.hires_scale:g}x to {width}x{height} with {name}"))
    begin = time.perf_counter()
    enlarged = []
    for image in images:
        if descriptor is not None:
            image = upscale_image(descriptor, image, cancel=cancel)
        enlarged.append(image if image.size == (width, height) else lanczos(image.convert("RGB"),
                                                                            (width, height)))
    timings["upscale"] = timings.get("upscale", 0.0) + time.perf_counter() - begin
    steps = min(int(request.steps * request.hires_strength), request.steps)
    record = {"upscaler": info or "Lanczos", "size": [width, height], "steps": steps,
              "scale": request.hires_scale, "strength": request.hires_strength}
    if steps == 0:  # strength 0: the enlargement alone
        return enlarged, record
    if cancel.is_set():
        raise CancelledError("cancelled")
    emit(StageStarted("hires", f"{steps} steps at strength {request.hires_strength:g}, {width}x{height}"))
    pipe = img2img_pipe(model.pipe)
    begin = time.perf_counter()
    result, done = [], [0]
    grand_total = steps * len(enlarged)

    def on_step_end(pipeline, i, t, callback_kwargs):
        done[0] += 1
        emit(Progress(min(done[0], grand_total), grand_total, None, time.perf_counter() - start,
                      stage="hires"))
        if cancel.is_set():
            raise CancelledError("cancelled")
        return {}

    for image, generator in zip(enlarged, generators):
        output = pipe(**text_kwargs, image=image, strength=request.hires_strength,
                      num_inference_steps=request.steps, guidance_scale=request.guidance_scale,
                      generator=generator, callback_on_step_end=on_step_end, output_type="pil")
        result.append(output.images[0])
    timings["hires"] = time.perf_counter() - begin
    return result, record


# ---- upscaling as a job of its own ---------------------------------------------------------------------


def run_job(engine, source, model: str = "default", scale: float | None = None,
            tile: int | None = DEFAULT_TILE, emit: Emit | None = None, cancel: threading.Event | None = None,
            model_folder: Path | str | None = None) -> Finished | None:
    """Upscale one image file (or PIL image): see ``Engine.upscale``."""
    emit = emit or (lambda event: None)
    cancel = cancel or threading.Event()
    start = time.perf_counter()
    timings: dict[str, float] = {}
    if cancel.is_set():
        emit(Cancelled())
        return None

    # 1. the image, upright; the options that need no model
    if isinstance(source, Image.Image):
        image, input_name = ImageOps.exif_transpose(source), None
    else:
        image, input_name = open_image(source), str(Path(source).expanduser())
    tile = check_tile(tile)

    # 2. the upscaler (loaded once per file), then the checks that need it
    begin = time.perf_counter()
    folder = Path(model_folder).expanduser() if model_folder else None
    if not _cached(engine, model, folder):
        emit(StageStarted("load", f"upscaler {model} on {engine.describe_device()}"))
    descriptor, info = get_upscaler(engine, model, field="model", folder=folder)
    timings["load"] = time.perf_counter() - begin
    scale = check_scale(descriptor, scale)
    check_size(descriptor, image.size)
    if cancel.is_set():
        emit(Cancelled())
        return None

    # 3. tiles, with a Progress per tile
    target = output_size(image.size, scale)
    total = plan(descriptor, image, tile)
    emit(StageStarted("upscale", f"{image.width}x{image.height} to {target[0]}x{target[1]} with "
                                 f"{info['name']} ({int(descriptor.scale)}x), {total} tile(s)"))
    begin = time.perf_counter()

    def progress(done: int, total: int) -> None:
        emit(Progress(done, total, None, time.perf_counter() - start, stage="upscale"))

    try:
        with torch.inference_mode():
            result = upscale_image(descriptor, image, scale=scale, tile=tile, progress=progress, cancel=cancel)
    except CancelledError:
        emit(Cancelled())
        return None
    timings["upscale"] = time.perf_counter() - begin
    timings["total"] = time.perf_counter() - start
    recipe = {
        "job": "upscale", "input": input_name, "input_size": list(image.size), "output_size": list(result.size),
        "mode": result.mode, "scale": scale, "tile": tile, "tiles": total, "upscaler": info,
        "device": str(descriptor.device), "dtype": str(descriptor.dtype).removeprefix("torch."),
        "app_version": desktop_app.__version__, "timings": {k: round(v, 4) for k, v in timings.items()},
    }
    return Finished(images=[result], seeds=[], recipe=recipe, timings=dict(timings))


def _cached(engine, choice: str, folder: Path | None) -> bool:
    """Whether ``choice`` is already loaded (then no "load" stage is announced)."""
    try:
        if choice == upscaler_files.DEFAULT_UPSCALER:
            path = _default_path(engine, folder)
            loaded = engine.model
            if loaded is not None and loaded.upscaler is not None and path == _own_upscaler(loaded):
                return True
        else:
            path = upscaler_files.resolve(choice)
        return (str(path.resolve()), path.stat().st_mtime_ns) in engine._upscalers
    except (RequestError, OSError):
        return False

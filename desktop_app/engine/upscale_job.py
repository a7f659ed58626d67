"""The Engine's upscalers: which upscaler a name means, the models loaded for it (cached per file), the upscale
stage of a generation, the hires fix's enlargement, and upscaling as a job of its own (``Engine.upscale``).

Only ``Upscalers`` touches its cache; the Engine holds one and clears it in ``unload()``.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import torch
from PIL import Image, ImageOps

import desktop_app

from desktop_app.models import upscaler_files
from desktop_app.errors import CancelledError, RequestError
from desktop_app.engine.events import Emit, Finished, Progress, StageStarted
from desktop_app.engine.recipe import UpscaleRecipe
from desktop_app.engine.request import UpscaleRequest
from desktop_app.engine.upscale import (
    DEFAULT_TILE, check_scale, check_size, describe_upscaler, lanczos, load_upscaler, open_image, output_size,
    plan, upscale_image,
)


class Upscalers:
    """The upscaler models of one Engine, loaded once per file (path and modification time) on its device.

    ``owner`` is the Engine: its ``device``, ``dtype``, ``describe_device()`` and loaded ``model`` (whose own
    upscaler "default" may mean) are read when needed, so a device switch is followed."""

    def __init__(self, owner):
        self._owner = owner
        self._cache: dict[tuple[str, int], tuple] = {}  # (resolved path, mtime) -> (descriptor, record)

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        self._cache.clear()

    # ---- which upscaler ------------------------------------------------------------------------------

    def get(self, choice: str, model=None, field: str = "upscale", folder: Path | None = None) -> tuple:
        """(descriptor, recipe record) for ``choice``: "default", a file path, or a name in the user's
        upscalers folder (see upscaler_files).

        With ``model`` (a generation): "default" is that model's own upscaler, and a model without one is a
        RequestError. Without (an upscale job): "default" is the upscaler of ``folder``, else of the loaded
        model, else the embedded default model's, the first that has one."""
        if choice == upscaler_files.DEFAULT_UPSCALER and model is not None:
            if model.upscaler is None:
                raise RequestError(field, f"the model {model.display_name} has no embedded upscaler; give the "
                                          "path or name of an upscaler file instead")
            path = upscaler_files.resolve(choice, model.path, field)
            return model.upscaler, describe_upscaler(model.upscaler, choice, path)
        path = self._path(choice, folder, field)
        own = self._loaded_models_own(choice, path)
        if own is not None:
            return own, describe_upscaler(own, choice, path)
        key = _key(path)
        if key not in self._cache:
            descriptor = load_upscaler(path, self._owner.device, self._owner.dtype)
            self._cache[key] = (descriptor, describe_upscaler(descriptor, choice, path))
        descriptor, info = self._cache[key]
        return descriptor, info | {"name": upscaler_files.display_name(choice, path)}

    def is_loaded(self, choice: str, folder: Path | None = None) -> bool:
        """Whether ``choice`` (for a job) needs no loading: then no "load" stage is announced."""
        try:
            path = self._path(choice, folder, "model")
            return self._loaded_models_own(choice, path) is not None or _key(path) in self._cache
        except (RequestError, OSError):
            return False

    def _path(self, choice: str, folder: Path | None, field: str) -> Path:
        if choice != upscaler_files.DEFAULT_UPSCALER:
            return upscaler_files.resolve(choice, None, field)
        loaded = self._owner.model
        for where in (folder, loaded.path if loaded is not None else None):
            if where:
                try:
                    return upscaler_files.resolve(upscaler_files.DEFAULT_UPSCALER, where, field)
                except RequestError:
                    pass
        return upscaler_files.resolve(upscaler_files.DEFAULT_UPSCALER, None, field)  # the embedded model's

    def _loaded_models_own(self, choice: str, path: Path):
        """The loaded model's upscaler when "default" resolved to its file (it is in memory already)."""
        from desktop_app.models.model_folder import upscaler_path

        loaded = self._owner.model
        if choice != upscaler_files.DEFAULT_UPSCALER or loaded is None or loaded.upscaler is None:
            return None
        return loaded.upscaler if path == upscaler_path(loaded.path) else None

    # ---- in a generation ------------------------------------------------------------------------------

    @staticmethod
    def stage(images: list, upscaler: tuple, emit: Emit, cancel: threading.Event, start: float,
              tile: int | None = DEFAULT_TILE) -> list:
        """The upscale stage of a generation: each image through ``upscaler`` (descriptor, record), tile by
        tile, with one Progress(stage="upscale") per tile over the whole batch. CancelledError between tiles."""
        descriptor, info = upscaler
        first, scale = images[0], int(descriptor.scale)
        emit(StageStarted("upscale", f"{scale}x to {first.width * scale}x{first.height * scale} with "
                                     f"{info['name']}"))
        totals = [plan(descriptor, image, tile) for image in images]
        ticks = TileTicks(emit, start, sum(totals))
        result = []
        for image, total in zip(images, totals):
            result.append(upscale_image(descriptor, image, tile=tile, progress=ticks, cancel=cancel))
            ticks.offset += total
        return result

    @staticmethod
    def enlarge(images: list, upscaler: tuple | None, size: tuple[int, int], cancel: threading.Event) -> list:
        """The hires fix's enlargement: each image through ``upscaler`` (untiled; None: none), then Lanczos to
        exactly ``size``. CancelledError between images' tiles."""
        descriptor = upscaler[0] if upscaler is not None else None
        enlarged = []
        for image in images:
            if descriptor is not None:
                image = upscale_image(descriptor, image, cancel=cancel)
            enlarged.append(image if image.size == size else lanczos(image.convert("RGB"), size))
        return enlarged

    # ---- a job of its own -----------------------------------------------------------------------------

    def job(self, request: UpscaleRequest, emit: Emit, cancel: threading.Event) -> Finished:
        """Upscale ``request.source``: see ``Engine.upscale``. Raises CancelledError when cancelled."""
        start = time.perf_counter()
        timings: dict[str, float] = {}
        _check_cancel(cancel)

        # 1. the image, upright (a bad file is refused before any model loads)
        source = request.source
        if isinstance(source, Image.Image):
            image, input_name = ImageOps.exif_transpose(source), None
        else:
            image, input_name = open_image(source), str(Path(source).expanduser())

        # 2. the upscaler (loaded once per file), then the checks that need it
        begin = time.perf_counter()
        folder = Path(request.model_folder).expanduser() if request.model_folder else None
        if not self.is_loaded(request.model, folder):
            emit(StageStarted("load", f"upscaler {request.model} on {self._owner.describe_device()}"))
        descriptor, info = self.get(request.model, field="model", folder=folder)
        timings["load"] = time.perf_counter() - begin
        scale = check_scale(descriptor, request.scale)
        check_size(descriptor, image.size)
        _check_cancel(cancel)

        # 3. tiles, with a Progress per tile
        target, total = output_size(image.size, scale), plan(descriptor, image, request.tile)
        emit(StageStarted("upscale", f"{image.width}x{image.height} to {target[0]}x{target[1]} with "
                                     f"{info['name']} ({int(descriptor.scale)}x), {total} tile(s)"))
        begin = time.perf_counter()
        with torch.inference_mode():
            result = upscale_image(descriptor, image, scale=scale, tile=request.tile,
                                   progress=TileTicks(emit, start, total), cancel=cancel)
        timings["upscale"] = time.perf_counter() - begin
        timings["total"] = time.perf_counter() - start

        # 4. the recipe
        recipe = UpscaleRecipe(
            input=input_name, input_size=tuple(image.size), output_size=tuple(result.size), mode=result.mode,
            scale=scale, tile=request.tile, tiles=total, upscaler=info, device=str(descriptor.device),
            dtype=str(descriptor.dtype).removeprefix("torch."), app_version=desktop_app.__version__,
            timings={k: round(v, 4) for k, v in timings.items()})
        return Finished(images=[result], seeds=[], recipe=recipe, timings=dict(timings))


class TileTicks:
    """``progress(done, total)`` for upscale_image: one Progress(stage="upscale") per tile, counted on over a
    batch (``offset``: the tiles of the images before this one) out of ``total``."""

    def __init__(self, emit: Emit, start: float, total: int):
        self.emit, self.start, self.total, self.offset = emit, start, total, 0

    def __call__(self, done: int, _total: int) -> None:
        self.emit(Progress(self.offset + done, self.total, None, time.perf_counter() - self.start,
                           stage="upscale"))


def _key(path: Path) -> tuple[str, int]:
    return str(path.resolve()), path.stat().st_mtime_ns


def _check_cancel(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise CancelledError("Upscaling was cancelled.")

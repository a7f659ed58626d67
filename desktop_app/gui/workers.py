"""The bridge between the window and the engine: a QObject living in its own QThread.

The engine module (and with it torch) is imported lazily inside the worker's slots: the window shows at once.
Engine events arrive on the worker thread; Qt signals carry them to the UI thread (queued connections).
Every exception ends as ``failed(kind, message)`` with a message a person can read; tracebacks go to the log.
"""

from __future__ import annotations

import logging
import os
import threading
import traceback
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

log = logging.getLogger(__name__)

# Every worker thread ever started, so that tests (and closeEvent) can check that none is left running.
_threads: weakref.WeakSet[QThread] = weakref.WeakSet()

FAILURE_KINDS = ("bad_input", "model", "out_of_memory", "engine", "internal")


def live_threads() -> list[QThread]:
    """Worker threads that are still running."""
    return [thread for thread in list(_threads) if thread.isRunning()]


class WorkerThread(QThread):
    """A plain QThread (runs an event loop) that registers itself in ``live_threads()``."""

    def __init__(self, name: str, parent: QObject | None = None):
        super().__init__(parent)
        self.setObjectName(name)
        _threads.add(self)


class GenerationWorker(QObject):
    """Runs GenerationRequests on one Engine, kept across runs so the model stays loaded.

    Use it from the UI thread like this::

        worker.moveToThread(thread); thread.start()
        worker.submit(request)   # queued to the worker thread
        worker.cancel()          # takes effect at once, from any thread
    """

    stage = Signal(str, str)  # stage name, detail (for "text": the tokens)
    progress = Signal(int, int, object, float)  # step, total, preview PIL image or None, elapsed seconds
    finished = Signal(object)  # desktop_app.engine.events.Finished
    failed = Signal(str, str)  # kind (one of FAILURE_KINDS), readable message
    cancelled = Signal()
    busy = Signal()
    idle = Signal()
    # the engine was created (at warm-up or at the first run): (True, "cpu (float32)");
    # or warm-up failed: (False, a readable message)
    warmed = Signal(bool, str)

    _run_requested = Signal(object, object)  # request, threading.Event
    _warm_requested = Signal()

    def __init__(self, device: str = "auto", engine_factory: Callable[[str], object] | None = None,
                 log_dir: Path | None = None):
        super().__init__()
        self.device = device
        self._engine_factory = engine_factory
        self._engine = None
        self._log_dir = log_dir
        self._cancel_event: threading.Event | None = None
        self._lock = threading.Lock()
        # connected here (worker still in the UI thread): Qt queues them once the worker lives in its thread
        self._run_requested.connect(self._run)
        self._warm_requested.connect(self._warm_up)

    # ---- called from the UI thread ----------------------------------------------------------------

    def submit(self, request) -> None:
        """Queue a generation. Each job has its own cancel event: a late cancel never hits the next job."""
        event = threading.Event()
        with self._lock:
            self._cancel_event = event
        self._run_requested.emit(request, event)

    def cancel(self) -> None:
        """Ask the running (or queued) job to stop. A direct call, not queued: the engine sees it at its
        next step."""
        with self._lock:
            if self._cancel_event is not None:
                self._cancel_event.set()

    def warm_up(self) -> None:
        """Import the engine (torch, diffusers) in the worker thread while the person types."""
        self._warm_requested.emit()

    # ---- run in the worker thread -----------------------------------------------------------------

    @Slot()
    def _warm_up(self) -> None:
        try:
            self._get_engine()
        except Exception as exc:  # noqa: BLE001 - warm-up is best effort; a real run reports properly
            log.info("engine warm-up failed: %s", exc)
            self.warmed.emit(False, str(exc) if _is_engine_error(exc) else _one_line(exc))

    @Slot(object, object)
    def _run(self, request, cancel: threading.Event) -> None:
        self.busy.emit()
        try:
            if cancel.is_set():
                self.cancelled.emit()
                return
            engine = self._get_engine()
            result = self._execute(engine, request, cancel)
            if result is None:
                self.cancelled.emit()
            else:
                self.finished.emit(result)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            kind, message = self._describe(exc)
            if kind == "cancelled":
                self.cancelled.emit()
            else:
                self.failed.emit(kind, message)
        finally:
            with self._lock:
                if self._cancel_event is cancel:
                    self._cancel_event = None
            self.idle.emit()

    def _execute(self, engine, request, cancel: threading.Event):
        """Run one job on the engine: Finished, or None when it was cancelled."""
        request = _resolve_library_model(request)
        return engine.run(request, self._on_event, cancel)

    def _get_engine(self):
        if self._engine is None:
            if self._engine_factory is not None:
                self._engine = self._engine_factory(self.device)
            else:
                from desktop_app.engine.generate import Engine  # lazy: this is where torch loads

                self._engine = Engine(device=self.device)
            describe = getattr(self._engine, "describe_device", None)
            self.warmed.emit(True, describe() if callable(describe) else "")
        return self._engine

    def _on_event(self, event) -> None:
        # Match on the class name: importing the events module here is cheap, but fakes in tests stay simple.
        name = type(event).__name__
        if name == "StageStarted":
            self.stage.emit(str(event.stage), str(event.detail or ""))
        elif name == "Progress":
            self.progress.emit(int(event.step), int(event.total), event.preview, float(event.elapsed))
        # Finished comes back as run()'s return value, Cancelled as None: no double signals.

    def _describe(self, exc: BaseException) -> tuple[str, str]:
        from desktop_app import errors  # no torch in there

        if isinstance(exc, errors.CancelledError):
            return "cancelled", ""
        if isinstance(exc, errors.RequestError):
            return "bad_input", str(exc)
        if isinstance(exc, errors.ModelError):
            return "model", str(exc)
        if isinstance(exc, errors.OutOfMemory):  # every lighter mode was tried: the engine says which
            return "out_of_memory", str(exc)
        if _is_out_of_memory(exc):
            where = "GPU" if "cuda" in type(exc).__module__.lower() or "CUDA" in str(exc) else "device"
            return "out_of_memory", (
                f"The {where} ran out of memory. Try a smaller image, a batch of 1, or fewer images at once.")
        if isinstance(exc, errors.EngineError):
            return "engine", str(exc)
        log_file = self._write_traceback(exc)
        where = f" Details are in {log_file}." if log_file else ""
        return "internal", f"Something went wrong inside the engine: {_one_line(exc)}.{where}"

    def _write_traceback(self, exc: BaseException) -> Path | None:
        text = "".join(traceback.format_exception(exc))
        log.error("generation failed:\n%s", text)
        try:
            folder = self._log_dir or logs_dir()
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / "errors.log"
            with path.open("a", encoding="utf-8") as handle:
                handle.write(f"--- {datetime.now().isoformat(timespec='seconds')}\n{text}\n")
            return path
        except OSError:
            return None


@dataclass(frozen=True)
class UpscaleJob:
    """One image to upscale: a file path (or a PIL image) and the options of ``Engine.upscale``."""

    source: object  # str or Path of an image file, or a PIL image
    model: str = "default"  # "default", an upscaler file, or a name in the upscalers folder
    scale: float | None = None  # None: the model's own
    tile: int | None = 512
    model_folder: str | None = None  # the model folder whose upscaler "default" means (the form's model)


class UpscaleWorker(GenerationWorker):
    """Runs UpscaleJobs (``Engine.upscale``) in its own thread, with the same signals as GenerationWorker:
    stage ("load", "upscale"), progress once per tile (step = tiles done, total = tiles), finished with a
    Finished whose recipe["job"] is "upscale", failed, cancelled (between tiles). It has its own Engine, which
    loads only upscalers, so it never waits on a generation."""

    def _execute(self, engine, job: UpscaleJob, cancel: threading.Event):
        return engine.upscale(job.source, job.model, scale=job.scale, tile=job.tile, emit=self._on_event,
                              cancel=cancel, model_folder=job.model_folder)


def logs_dir() -> Path:
    """The per-user logs folder (DESKTOP_APP_HOME overrides the base)."""
    try:
        from desktop_app import paths

        return Path(paths.logs_dir())
    except (ImportError, AttributeError):  # paths not importable: the same rule, by hand
        home = os.environ.get("DESKTOP_APP_HOME")
        return (Path(home) if home else Path.home() / ".desktop-app") / "logs"


def _resolve_library_model(request):
    """The request with a model-library name replaced by its path; anything else as it was (the loader
    reports a missing path itself)."""
    import dataclasses

    from desktop_app.errors import ModelError
    from desktop_app.models.model_library import resolve_model  # torch-free

    model = getattr(request, "model", None)
    if not isinstance(model, str) or not dataclasses.is_dataclass(request):
        return request
    try:
        resolved = resolve_model(model)
    except ModelError:
        return request
    return request if resolved == model else dataclasses.replace(request, model=resolved)


def _is_engine_error(exc: BaseException) -> bool:
    from desktop_app.errors import EngineError

    return isinstance(exc, EngineError)


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    # torch.OutOfMemoryError / torch.cuda.OutOfMemoryError, matched by name so that torch is not imported here
    if any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def _one_line(exc: BaseException, limit: int = 240) -> str:
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"

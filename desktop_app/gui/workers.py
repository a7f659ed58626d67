"""The bridge between the window and the engine: a QObject living in its own QThread.

The engine module (and with it torch) is imported lazily inside the worker's slots: the window shows at once.
Engine events arrive on the worker thread; Qt signals carry them to the UI thread (queued connections).
Every exception ends as ``failed(kind, message)`` with a message a person can read; tracebacks go to the log.
"""

from __future__ import annotations

import logging
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QObject, QThread, Signal, Slot

from desktop_app.engine import events  # torch-free: the typed events the engine emits
from desktop_app.errors import EngineError, FailureKind, OutOfMemory, failure_kind, log_traceback, one_line

log = logging.getLogger(__name__)

# Every worker thread ever started, so that tests (and closeEvent) can check that none is left running.
_threads: weakref.WeakSet[QThread] = weakref.WeakSet()

# the kinds a failed signal carries (a cancel is the cancelled signal): FailureKind's values
FAILURE_KINDS = tuple(kind.value for kind in FailureKind if kind is not FailureKind.CANCELLED)


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
    # step, total, preview PIL image or None, elapsed seconds, the stage counting ("denoise", "hires", "upscale")
    progress = Signal(int, int, object, float, str)
    finished = Signal(object)  # desktop_app.engine.events.Finished
    failed = Signal(str, str)  # kind (a FailureKind value, one of FAILURE_KINDS), readable message
    cancelled = Signal()
    busy = Signal()
    idle = Signal()
    # the engine was created (at warm-up or at the first run): (True, "cpu (float32)");
    # or warm-up failed: (False, a readable message)
    warmed = Signal(bool, str)

    _run_requested = Signal(object, object, object)  # request, threading.Event, weights mode or None
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

    def submit(self, request, weights: str | None = None) -> None:
        """Queue a generation. Each job has its own cancel event: a late cancel never hits the next job.
        ``weights`` ("auto", "full", "fp8"; None: as it is): the Engine's ``set_weights`` before the run."""
        event = threading.Event()
        with self._lock:
            self._cancel_event = event
        self._run_requested.emit(request, event, weights)

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
            self.warmed.emit(False, str(exc) if isinstance(exc, EngineError) else one_line(exc))

    @Slot(object, object, object)
    def _run(self, request, cancel: threading.Event, weights: str | None = None) -> None:
        self.busy.emit()
        try:
            if cancel.is_set():
                self.cancelled.emit()
                return
            engine = self._get_engine()
            if weights is not None and callable(getattr(engine, "set_weights", None)):
                engine.set_weights(weights)  # a model whose storage this changes loads again
            result = self._execute(engine, request, cancel)
            if result is None:
                self.cancelled.emit()
            else:
                self.finished.emit(result)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            kind, message = self._describe(exc)
            if kind is FailureKind.CANCELLED:
                self.cancelled.emit()
            else:
                self.failed.emit(kind.value, message)
        finally:
            with self._lock:
                if self._cancel_event is cancel:
                    self._cancel_event = None
            self.idle.emit()

    def _execute(self, engine, request, cancel: threading.Event):
        """Run one job on the engine: Finished, or None when it was cancelled. Library names become paths
        first (the form has applied the model's defaults); an unknown name is a ModelError, a "model" failure
        with the library's message (close matches), before the engine loads anything."""
        from desktop_app.models.resolve import resolve_names  # torch-free

        return engine.run(resolve_names(request), self._on_event, cancel)

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
        if isinstance(event, events.StageStarted):
            self.stage.emit(str(event.stage), str(event.detail or ""))
        elif isinstance(event, events.Progress):
            self.progress.emit(int(event.step), int(event.total), event.preview, float(event.elapsed),
                               str(event.stage))
        # the terminal events (Finished, Cancelled, Failed) are ignored: run()'s return value and its exception
        # decide the outcome, so each job ends in exactly one signal

    def _describe(self, exc: BaseException) -> tuple[FailureKind, str]:
        """The failure's kind and a message a person can act on; an internal one's traceback goes to the log."""
        kind = failure_kind(exc)
        if kind is FailureKind.OUT_OF_MEMORY and not isinstance(exc, OutOfMemory):  # OutOfMemory says what
            where = "GPU" if "cuda" in type(exc).__module__.lower() or "CUDA" in str(exc) else "device"
            return kind, (f"The {where} ran out of memory. Try a smaller image, a batch of 1, or fewer images "
                          "at once.")
        if kind is FailureKind.DISK and isinstance(exc, OSError):
            where = f" ({exc.filename})" if exc.filename else ""
            return kind, f"{exc.strerror or one_line(exc)}{where}. Free some disk space, or write elsewhere."
        if kind is FailureKind.INTERNAL:
            log.error("generation failed", exc_info=exc)
            log_file = log_traceback(exc, "window", folder=self._log_dir)
            where = f" Details are in {log_file}." if log_file else ""
            return kind, f"Something went wrong inside the engine: {one_line(exc)}.{where}"
        return kind, "" if kind is FailureKind.CANCELLED else str(exc)


class UpscaleWorker(GenerationWorker):
    """Runs UpscaleRequests (``Engine.upscale``) in its own thread, with the same signals as GenerationWorker:
    stage ("load", "upscale"), progress once per tile (step = tiles done, total = tiles, stage "upscale"),
    finished with a Finished whose recipe is an UpscaleRecipe, failed, cancelled (between tiles). It has its
    own Engine, which loads only upscalers, so it never waits on a generation."""

    def _execute(self, engine, request, cancel: threading.Event):
        return engine.upscale(request, emit=self._on_event, cancel=cancel)


class EditWorker(GenerationWorker):
    """Runs EditRequests (an image changed by an instruction, engine/edit_job.py) with its own signals, the same
    as GenerationWorker's: stage ("load", "denoise"), progress once per step (no preview), finished with a
    Finished whose recipe is an EditRecipe, failed, cancelled (at the next step).

    It lives in the generation worker's thread and runs on that worker's Engine (``engine_source``: its
    ``_get_engine``): an edit model is as large as the models that generate, so it replaces the loaded one
    instead of loading beside it, and the two never run at once."""

    def __init__(self, engine_source: Callable[[], object], device: str = "auto"):
        super().__init__(device=device)
        self._engine_source = engine_source

    def _get_engine(self):
        return self._engine_source()

    def _execute(self, engine, request, cancel: threading.Event):
        own = getattr(engine, "edit", None)  # an engine with an edit job of its own (the tests' fake engine)
        if callable(own):
            return own(request, emit=self._on_event, cancel=cancel)
        from desktop_app.engine.edit_job import run_edit  # lazy: torch

        return run_edit(engine, request, self._on_event, cancel)

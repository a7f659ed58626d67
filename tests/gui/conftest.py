"""GUI test setup: offscreen Qt, no worker thread left behind, a fake engine, windows to open, files to drop.

User folders in tmp_path come from tests/conftest.py (its autouse ``user_home``).
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists

import threading
import time
import warnings

import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from desktop_app.engine.events import Cancelled, Failed, Finished, Progress, StageStarted
from desktop_app.engine.request import UpscaleRequest
from desktop_app.errors import failure_kind, one_line

from tests.fake_recipes import generation_recipe, upscale_recipe


@pytest.fixture(autouse=True)
def no_thread_left_running(qapp):
    """Fail a test that leaves a worker QThread running (pytest-qt closes its widgets before this runs)."""
    yield
    from desktop_app.gui.workers import live_threads

    running = live_threads()
    if running:
        names = ", ".join(thread.objectName() or repr(thread) for thread in running)
        for thread in running:  # stop them so that the next test starts clean
            thread.quit()
            thread.wait(10_000)
        pytest.fail(f"the test left worker thread(s) running: {names}")


class FakeEngine:
    """The engine's contract without torch. ``run``: stages, one Progress(stage="denoise") per step with a
    preview, then exactly one terminal event (Finished, Cancelled or Failed) before it returns or raises.
    ``upscale(request, emit, cancel)``: an UpscaleRequest enlarged 4x, one Progress(stage="upscale") per tile.
    ``edit(request, emit, cancel)``: an EditRequest's image inverted, one Progress per step (see EditWorker).

    ``delay`` seconds per step; ``error`` raised after the first step (at the start of an upscale); ``runs``
    counts generations; ``requests`` keeps every request the engine was given.
    """

    def __init__(self, device: str = "auto", delay: float = 0.0, error: BaseException | None = None,
                 tiles: int = 4):
        self.device = device
        self.delay = delay
        self.error = error
        self.tiles = tiles
        self.runs = 0
        self.tiles_done = 0
        self.steps_done = 0  # edit steps run
        self.requests: list = []
        self.started = threading.Event()

    def run(self, request, emit, cancel):
        self.runs += 1
        self.requests.append(request)
        with _terminal(emit) as outcome:
            outcome.result = self._generate(request, emit, cancel)
        return outcome.result

    def _generate(self, request, emit, cancel):
        start = time.perf_counter()
        emit(StageStarted("load", "fake"))
        emit(StageStarted("text", '["a</w>", "cat</w>"]'))
        emit(StageStarted("noise", f"seed {request.seed}"))
        emit(StageStarted("denoise", ""))
        self.started.set()
        for step in range(1, request.steps + 1):
            if cancel.is_set():
                return None
            time.sleep(self.delay)
            shade = int(255 * step / request.steps)
            preview = Image.new("RGB", (request.width, request.height), (shade, 64, 255 - shade))
            emit(Progress(step, request.steps, preview, time.perf_counter() - start, stage="denoise"))
            if self.error is not None:
                raise self.error
        emit(StageStarted("decode", ""))
        images = [Image.new("RGB", (request.width, request.height), (200, 120 + 20 * k, 40))
                  for k in range(request.batch_size)]
        if request.upscale:
            emit(StageStarted("upscale", "4x"))
            images = [image.resize((image.width * 4, image.height * 4)) for image in images]
        seed = 1234 if request.seed is None else request.seed
        seeds = [seed + k for k in range(request.batch_size)]
        timings = {"total": time.perf_counter() - start}
        recipe = generation_recipe(request, seeds, timings=timings)
        return Finished(images=images, seeds=seeds, recipe=recipe, timings=timings)

    def upscale(self, request, emit=None, cancel=None):
        emit = emit or (lambda event: None)
        cancel = cancel or threading.Event()
        self.requests.append(request)
        with _terminal(emit) as outcome:
            outcome.result = self._upscale(request, emit, cancel)
        return outcome.result

    def _upscale(self, request, emit, cancel):
        if not isinstance(request, UpscaleRequest):
            raise TypeError(f"upscale takes an UpscaleRequest, got {type(request).__name__}")
        if self.error is not None:
            raise self.error
        image = Image.open(request.source).convert("RGB")
        start = time.perf_counter()
        emit(StageStarted("upscale", f"{self.tiles} tiles"))
        self.started.set()
        for tile in range(1, self.tiles + 1):
            if cancel.is_set():
                return None
            time.sleep(self.delay)
            self.tiles_done += 1
            emit(Progress(tile, self.tiles, None, time.perf_counter() - start, stage="upscale"))
        big = image.resize((image.width * 4, image.height * 4))
        timings = {"total": time.perf_counter() - start}
        recipe = upscale_recipe(request, image.size, 4.0, timings=timings)
        return Finished(images=[big], seeds=[], recipe=recipe, timings=timings)


    def edit(self, request, emit=None, cancel=None):
        """An EditRequest: its image with the colours inverted, one Progress(stage="denoise") per step (8 when
        the request leaves steps to the model), an EditRecipe as edit_job.run_edit makes it."""
        emit = emit or (lambda event: None)
        cancel = cancel or threading.Event()
        self.requests.append(request)
        with _terminal(emit) as outcome:
            outcome.result = self._edit(request, emit, cancel)
        return outcome.result

    def _edit(self, request, emit, cancel):
        import hashlib
        from pathlib import Path

        from PIL import ImageOps

        from desktop_app.engine.edit_request import EditRecipe, EditRequest

        if not isinstance(request, EditRequest):
            raise TypeError(f"edit takes an EditRequest, got {type(request).__name__}")
        if self.error is not None:
            raise self.error
        request = request.with_defaults(8, 2.5)
        start = time.perf_counter()
        emit(StageStarted("load", "fake"))
        with Image.open(request.image) as opened:
            image = opened.convert("RGB")
        emit(StageStarted("denoise", f"edit: {request.steps} steps"))
        self.started.set()
        for step in range(1, request.steps + 1):
            if cancel.is_set():
                return None
            time.sleep(self.delay)
            self.steps_done += 1
            emit(Progress(step, request.steps, None, time.perf_counter() - start, stage="denoise"))
        edited = ImageOps.invert(image)
        timings = {"total": time.perf_counter() - start}
        sha256 = hashlib.sha256(Path(request.image).read_bytes()).hexdigest()
        recipe = EditRecipe(request=request, image_sha256=sha256,
                            input_size=image.size, output_size=edited.size, model_name=Path(request.model).name,
                            family="flux", pipeline="FluxKontextPipeline", device="cpu", dtype="float32",
                            app_version="test", timings=timings)
        return Finished(images=[edited], seeds=[request.seed], recipe=recipe, timings=timings)


class _terminal:
    """The engine's rule for one job: exactly one terminal event, just before it returns or raises (Finished,
    Cancelled for a None result, or Failed with the exception's kind)."""

    def __init__(self, emit):
        self.emit, self.result = emit, None

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, traceback):
        if exc is None:
            self.emit(self.result if self.result is not None else Cancelled())
        elif isinstance(exc, Exception):
            found = failure_kind(exc)
            self.emit(Failed(found, str(exc) if found.readable else one_line(exc)))
        return False


@pytest.fixture
def make_engine():
    """make_engine(delay=..., error=...) -> a FakeEngine (a fixture, so tests need not import conftest)."""
    return FakeEngine


@pytest.fixture
def open_window(qtbot):
    """open_window(**MainWindow kwargs) -> a shown, active MainWindow (closed after the test).

    The fixture keeps the windows alive until pytest-qt has closed them: qtbot holds only weak references,
    and a window collected with its thread still running would take the process down.
    """
    from desktop_app.gui.main_window import MainWindow

    windows = []

    def open_(**kwargs):
        window = MainWindow(**kwargs)
        windows.append(window)
        qtbot.addWidget(window)
        window.show()
        with qtbot.waitActive(window):  # window shortcuts (Ctrl+Enter, Esc) need the active window
            window.activateWindow()
        return window

    yield open_
    for window in windows:
        window.close()


@pytest.fixture
def open_fake_window(open_window, make_engine):
    """open_fake_window(engine=None, **MainWindow kwargs) -> open_window's window, running ``engine``
    (a new FakeEngine when None) on every device."""

    def open_(engine=None, **kwargs):
        engine = engine or make_engine()
        return open_window(engine_factory=lambda device: engine, **kwargs)

    return open_


@pytest.fixture
def drop():
    """drop(widget, path) -> whether the widget accepted the drag of that file; the file is then dropped."""

    def drop_(window, path) -> bool:
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
        with warnings.catch_warnings():  # PySide marks the QPoint constructor deprecated; it is the one there is
            warnings.simplefilter("ignore", DeprecationWarning)
            enter = QDragEnterEvent(window.rect().center(), Qt.DropAction.CopyAction, mime,
                                    Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(window, enter)
        accepted = enter.isAccepted()
        event = QDropEvent(QPointF(window.rect().center()), Qt.DropAction.CopyAction, mime,
                           Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        QApplication.sendEvent(window, event)
        return accepted

    return drop_

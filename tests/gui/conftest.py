"""GUI test setup: offscreen Qt, no worker thread left behind, a fake engine.

User folders in tmp_path come from tests/conftest.py (its autouse ``user_home``).
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")  # before any QApplication exists

import threading
import time

import pytest
from PIL import Image

from desktop_app.engine.events import Cancelled, Finished, Progress, StageStarted


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
    """Engine.run's contract without torch: stages, one Progress per step with a preview, Finished.

    ``delay`` seconds per step; ``error`` raised after the first step; ``runs`` counts calls.
    """

    def __init__(self, device: str = "auto", delay: float = 0.0, error: BaseException | None = None):
        self.device = device
        self.delay = delay
        self.error = error
        self.runs = 0
        self.started = threading.Event()

    def run(self, request, emit, cancel):
        self.runs += 1
        start = time.perf_counter()
        emit(StageStarted("load", "fake"))
        emit(StageStarted("text", '["a</w>", "cat</w>"]'))
        emit(StageStarted("noise", f"seed {request.seed}"))
        emit(StageStarted("denoise", ""))
        self.started.set()
        for step in range(1, request.steps + 1):
            if cancel.is_set():
                emit(Cancelled())
                return None
            time.sleep(self.delay)
            shade = int(255 * step / request.steps)
            preview = Image.new("RGB", (request.width, request.height), (shade, 64, 255 - shade))
            emit(Progress(step, request.steps, preview, time.perf_counter() - start))
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
        recipe = request.to_dict() | {"device": "cpu", "dtype": "float32", "seeds": seeds, "timings": timings}
        return Finished(images=images, seeds=seeds, recipe=recipe, timings=timings)


@pytest.fixture
def make_engine():
    """make_engine(delay=..., error=...) -> a FakeEngine (a fixture, so tests need not import conftest)."""
    return FakeEngine

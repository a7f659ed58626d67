"""Engine test helpers: one CPU engine for the session, and a recorder for the events a run emits."""

from __future__ import annotations

import threading

import pytest

from desktop_app.engine.events import Cancelled, Progress, StageStarted
from desktop_app.engine.request import GenerationRequest


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, event):
        self.events.append(event)

    def of(self, kind):
        return [e for e in self.events if isinstance(e, kind)]

    @property
    def stages(self):
        return [e.stage for e in self.of(StageStarted)]

    @property
    def progress(self):
        return self.of(Progress)

    @property
    def cancelled(self):
        return bool(self.of(Cancelled))


@pytest.fixture(scope="session")
def engine():
    from desktop_app.engine.generate import Engine

    return Engine(device="cpu", preview_share=None)  # a preview after every step, whatever it costs


@pytest.fixture
def make_request(tiny_model_dir):
    """make_request(**changes) -> a small, fast request on the tiny embedded model."""

    def make(**changes):
        values = {"prompt": "a red cat", "width": 32, "height": 32, "steps": 3, "seed": 42,
                  "model": str(tiny_model_dir)}
        values.update(changes)
        return GenerationRequest(**values)

    return make


@pytest.fixture
def generate(engine):
    """generate(request) -> (Finished or None, Recorder)."""

    def run(request, cancel=None, emit=None):
        recorder = Recorder()

        def both(event):
            recorder(event)
            if emit is not None:
                emit(event)

        return engine.run(request, both, cancel or threading.Event()), recorder

    return run

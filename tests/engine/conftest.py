"""Engine test helpers: one CPU engine for the session, and a recorder for the events a run emits."""

from __future__ import annotations

import threading

import pytest
from tiny_checkpoints import REFINER, build_tiny_checkpoint, build_tiny_pipeline

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


@pytest.fixture(scope="session")
def tiny_xl(tmp_path_factory):
    """A tiny SDXL base folder; a refiner folder holding the base's VAE and text encoder 2 (as refiner 1.0
    does), the same refiner as an original-layout single file with its config folder, and a refiner with
    weights of its own."""
    root = tmp_path_factory.mktemp("refiner")
    base = build_tiny_pipeline("sdxl")
    base.save_pretrained(root / "tiny-sdxl")
    tiny = build_tiny_checkpoint(REFINER, root / "single", base=base)
    tiny.pipe.save_pretrained(root / "tiny-refiner")
    build_tiny_pipeline(REFINER, seed=1).save_pretrained(root / "own-refiner")
    return {"base": root / "tiny-sdxl", "refiner": root / "tiny-refiner", "own": root / "own-refiner",
            "file": tiny.checkpoint, "config": tiny.config_dir}


@pytest.fixture
def xl_request(tiny_xl):
    """xl_request(**changes) -> a small request on the tiny SDXL base with the tiny refiner."""

    def make(**changes):
        values = {"prompt": "a red cat", "width": 32, "height": 32, "steps": 5, "seed": 11, "sampler": "Euler",
                  "model": str(tiny_xl["base"]), "refiner": str(tiny_xl["refiner"])}
        return GenerationRequest(**(values | changes))

    return make

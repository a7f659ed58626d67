"""The GenerationWorker in its QThread: signal order, failures by kind, cancellation."""

from __future__ import annotations

import errno

import pytest
from PySide6.QtCore import QObject, Slot

from desktop_app.errors import EngineError, ModelError, RequestError
from desktop_app.engine.request import GenerationRequest
from desktop_app.gui.workers import GenerationWorker, WorkerThread


@pytest.fixture
def start_worker(qtbot):
    """start_worker(engine or None) -> a GenerationWorker running in its own thread (stopped at teardown)."""
    started = []

    def start(engine=None, **kwargs):
        factory = (lambda device: engine) if engine is not None else None
        worker = GenerationWorker(device="cpu", engine_factory=factory, **kwargs)
        thread = WorkerThread("test-worker")
        worker.moveToThread(thread)
        thread.start()
        started.append((worker, thread))
        return worker

    yield start
    for worker, thread in started:
        worker.cancel()
        thread.quit()
        thread.wait()


class Recorder(QObject):
    """Lives in the UI thread: the worker's signals reach it queued, as they reach the window.

    Tests poll its log with qtbot.waitUntil rather than qtbot.waitSignal: a blocker connected to a signal
    emitted in another thread runs its slot in that thread, and a quit before the wait loop starts leaves
    the test hanging.
    """

    def __init__(self, worker):
        super().__init__()
        self.log: list[tuple] = []
        worker.busy.connect(self.on_busy)
        worker.stage.connect(self.on_stage)
        worker.progress.connect(self.on_progress)
        worker.finished.connect(self.on_finished)
        worker.failed.connect(self.on_failed)
        worker.cancelled.connect(self.on_cancelled)
        worker.idle.connect(self.on_idle)

    @Slot()
    def on_busy(self):
        self.log.append(("busy",))

    @Slot(str, str)
    def on_stage(self, stage, detail):
        self.log.append(("stage", stage, detail))

    @Slot(int, int, object, float, str)
    def on_progress(self, step, total, preview, elapsed, stage):
        self.log.append(("progress", step, total, preview, stage))

    @Slot(object)
    def on_finished(self, result):
        self.log.append(("finished", result))

    @Slot(str, str)
    def on_failed(self, kind, message):
        self.log.append(("failed", kind, message))

    @Slot()
    def on_cancelled(self):
        self.log.append(("cancelled",))

    @Slot()
    def on_idle(self):
        self.log.append(("idle",))

    def names(self) -> list[str]:
        return [entry[0] for entry in self.log]

    def count(self, name: str) -> int:
        return self.names().count(name)

    def first(self, name: str) -> tuple:
        return next(entry for entry in self.log if entry[0] == name)

    def steps(self) -> list[int]:
        return [entry[1] for entry in self.log if entry[0] == "progress"]


def run_and_wait(qtbot, worker, recorder, request, timeout=10_000):
    """Submit and wait until the worker is idle again."""
    idle_before = recorder.count("idle")
    worker.submit(request)
    qtbot.waitUntil(lambda: recorder.count("idle") > idle_before, timeout=timeout)


def test_signals_arrive_in_order(qtbot, start_worker, make_engine):
    worker = start_worker(make_engine())
    recorder = Recorder(worker)
    run_and_wait(qtbot, worker, recorder, GenerationRequest("a cat", steps=5, upscale="default"))

    names = [entry[0] if entry[0] != "stage" else f"stage:{entry[1]}" for entry in recorder.log]
    assert names == (["busy", "stage:load", "stage:text", "stage:noise", "stage:denoise"] + ["progress"] * 5
                     + ["stage:decode", "stage:upscale", "finished", "idle"])
    assert recorder.steps() == [1, 2, 3, 4, 5]
    assert all(entry[3].size == (64, 64) for entry in recorder.log if entry[0] == "progress")
    assert {entry[4] for entry in recorder.log if entry[0] == "progress"} == {"denoise"}, "the stage travels"
    assert recorder.first("finished")[1].images[0].size == (256, 256)
    # the engine's terminal Finished event is not a second finished signal: run()'s return value is the one


def test_terminal_events_alone_never_end_a_job(qtbot, start_worker):
    """The worker ignores Finished/Cancelled/Failed events: the return value and the exception decide."""
    from desktop_app.engine.events import Cancelled, Failed, Finished
    from desktop_app.errors import FailureKind

    from tests.fake_recipes import generation_recipe

    class Chatty:
        def run(self, request, emit, cancel):
            emit(Failed(FailureKind.ENGINE, "not the outcome"))
            emit(Cancelled())
            emit(Finished(images=[], seeds=[], recipe=generation_recipe(request, model_name="event")))
            return Finished(images=[], seeds=[7], recipe=generation_recipe(request, [7], model_name="return"))

    worker = start_worker(Chatty())
    recorder = Recorder(worker)
    run_and_wait(qtbot, worker, recorder, GenerationRequest("a cat", steps=2))
    assert recorder.names() == ["busy", "finished", "idle"]
    assert recorder.first("finished")[1].recipe.model_name == "return"


def test_the_failure_kinds_are_failure_kind_values():
    from desktop_app.errors import FailureKind
    from desktop_app.gui.workers import FAILURE_KINDS

    assert set(FAILURE_KINDS) == {kind.value for kind in FailureKind} - {"cancelled"}
    assert {"bad_input", "model", "out_of_memory", "disk", "engine", "internal"} == set(FAILURE_KINDS)


@pytest.mark.parametrize(("error", "kind", "words"), [
    (RequestError("guidance_scale", "must be a number from 0 to 30"), "bad_input", "guidance_scale: must be"),
    (ModelError("The model folder /x has no unet."), "model", "has no unet"),
    (MemoryError(), "out_of_memory", "ran out of memory"),
    (type("OutOfMemoryError", (RuntimeError,), {})("CUDA out of memory. Tried to allocate 2 GiB"),
     "out_of_memory", "GPU ran out of memory"),
    # found by the exception's type, never by its text: a RuntimeError that mentions memory is a bug report
    (RuntimeError("out of memory in my own code"), "internal", "RuntimeError: out of memory in my own code"),
    (OSError(errno.ENOSPC, "No space left on device", "/out/x.png"), "disk", "No space left on device (/out"),
    (EngineError("The upscaler file is damaged."), "engine", "upscaler file is damaged"),
    (ZeroDivisionError("division by zero"), "internal", "ZeroDivisionError: division by zero"),
])
def test_engine_errors_become_failed_with_a_kind(qtbot, start_worker, make_engine, user_home,
                                                 error, kind, words):
    worker = start_worker(make_engine(error=error))
    recorder = Recorder(worker)
    run_and_wait(qtbot, worker, recorder, GenerationRequest("a cat", steps=3))
    assert recorder.names()[-2:] == ["failed", "idle"]
    _, got_kind, message = recorder.first("failed")
    assert got_kind == kind
    assert words in message
    assert "Traceback" not in message and "\n" not in message
    if kind == "internal":
        log_files = list(user_home.rglob("*.log"))
        assert log_files, "the traceback should be written to the logs folder"
        text = log_files[0].read_text()
        assert "Traceback" in text and type(error).__name__ in text
        assert str(log_files[0]) in message


def test_the_log_folder_override_gets_the_traceback(qtbot, start_worker, make_engine, tmp_path):
    worker = start_worker(make_engine(error=KeyError("unet")), log_dir=tmp_path / "logs")
    recorder = Recorder(worker)
    run_and_wait(qtbot, worker, recorder, GenerationRequest("a cat", steps=2))
    _, kind, message = recorder.first("failed")
    log_file = tmp_path / "logs" / "errors.log"
    assert kind == "internal" and str(log_file) in message
    assert "KeyError: 'unet'" in log_file.read_text()


def test_an_unknown_library_name_is_a_model_failure_before_the_engine(qtbot, start_worker, make_engine):
    engine = make_engine()
    worker = start_worker(engine)
    recorder = Recorder(worker)
    run_and_wait(qtbot, worker, recorder, GenerationRequest("a cat", steps=2, model="no-such-model-name"))
    _, kind, message = recorder.first("failed")
    assert kind == "model" and "no-such-model-name" in message, message
    assert engine.runs == 0, "nothing was loaded for a name the library does not know"


def test_cancel_stops_at_once_and_the_next_run_works(qtbot, start_worker, make_engine):
    engine = make_engine(delay=0.05)
    worker = start_worker(engine)
    recorder = Recorder(worker)
    worker.submit(GenerationRequest("a cat", steps=100))
    qtbot.waitUntil(lambda: recorder.count("progress") >= 1, timeout=10_000)
    worker.cancel()  # called from this (UI) thread while the worker is inside engine.run
    qtbot.waitUntil(lambda: recorder.count("idle") == 1, timeout=5_000)
    assert recorder.names()[-2:] == ["cancelled", "idle"]
    assert len(recorder.steps()) < 10, "cancel should stop within a step or two"
    assert recorder.count("finished") == 0

    recorder.log.clear()
    run_and_wait(qtbot, worker, recorder, GenerationRequest("a dog", steps=3))
    assert recorder.steps() == [1, 2, 3]
    assert recorder.names()[-2:] == ["finished", "idle"]
    assert engine.runs == 2, "one engine is kept across runs"


def test_cancel_right_after_submit_cancels_that_job_only(qtbot, start_worker, make_engine):
    worker = start_worker(make_engine())
    recorder = Recorder(worker)
    worker.submit(GenerationRequest("a cat", steps=3))
    worker.cancel()
    qtbot.waitUntil(lambda: recorder.count("idle") == 1, timeout=10_000)
    assert recorder.count("cancelled") == 1 and recorder.count("finished") == 0
    run_and_wait(qtbot, worker, recorder, GenerationRequest("a cat", steps=3))
    assert recorder.count("finished") == 1


def test_real_engine_on_the_tiny_model(qtbot, start_worker, tiny_model_dir):
    worker = start_worker()  # the real Engine, imported lazily in the worker thread
    recorder = Recorder(worker)
    request = GenerationRequest("a red circle", steps=4, model=str(tiny_model_dir), seed=7,
                                **tiny_size(tiny_model_dir))
    run_and_wait(qtbot, worker, recorder, request, timeout=180_000)
    assert recorder.count("failed") == 0, recorder.first("failed")
    stages = [entry[1] for entry in recorder.log if entry[0] == "stage"]
    assert "text" in stages and "denoise" in stages
    assert recorder.steps() == [1, 2, 3, 4]
    names = recorder.names()
    assert names.index("finished") > max(i for i, name in enumerate(names) if name == "progress")
    finished = recorder.first("finished")[1]
    assert finished.seeds == [7]
    assert finished.images[0].size == (request.width, request.height)


def test_real_engine_missing_model_is_a_model_failure(qtbot, start_worker, tmp_path):
    worker = start_worker()
    recorder = Recorder(worker)
    request = GenerationRequest("a cat", steps=2, model=str(tmp_path / "no-such-model"))
    run_and_wait(qtbot, worker, recorder, request, timeout=180_000)
    _, kind, message = recorder.first("failed")
    assert kind == "model", message
    assert "no-such-model" in message


def tiny_size(model_dir) -> dict:
    """The size the tiny model declares as its default (64x64 when it declares none)."""
    from desktop_app.gui.model_info import model_defaults

    defaults = model_defaults(str(model_dir)).get("defaults", {})
    return {"width": int(defaults.get("width", 64)), "height": int(defaults.get("height", 64))}

"""The event contract: every run and every upscale job ends with exactly one terminal event (Finished, the
same object it returns; Cancelled when it returns None; Failed with its FailureKind before the exception
propagates), and every Progress names its stage."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PIL import Image

from desktop_app.engine import run_steps, upscale_job
from desktop_app.engine.events import Cancelled, Failed, Finished, Progress, StageStarted
from desktop_app.engine.outcome import Outcome
from desktop_app.engine.request import GenerationRequest, UpscaleRequest
from desktop_app.errors import CancelledError, FailureKind, ModelError, RequestError

from tests.fake_recipes import generation_recipe

TERMINAL = (Finished, Cancelled, Failed)


def terminal(events: list) -> list:
    return [e for e in events if isinstance(e, TERMINAL)]


def picture(width=48, height=40):
    y, x = np.mgrid[0:height, 0:width]
    return Image.fromarray(np.stack([x * 5, y * 6, (x + y) % 256], -1).astype(np.uint8))


def run(engine, request, cancel=None, on_event=None):
    """(result or the exception raised, the events)."""
    events = []

    def emit(event):
        events.append(event)
        if on_event is not None:
            on_event(event)

    try:
        return engine.run(request, emit, cancel or threading.Event()), events
    except Exception as exc:  # noqa: BLE001 - the test looks at it
        return exc, events


# ---- Engine.run ------------------------------------------------------------------------------------------


def test_a_finished_run_ends_with_its_result(engine, make_request):
    result, events = run(engine, make_request())
    assert isinstance(result, Finished)
    assert terminal(events) == [result] and events[-1] is result


def test_a_run_cancelled_before_the_start_or_at_a_step_ends_with_one_cancelled(engine, make_request):
    cancel = threading.Event()
    cancel.set()
    result, events = run(engine, make_request(), cancel)
    assert result is None and events == [Cancelled()]

    cancel = threading.Event()
    result, events = run(engine, make_request(steps=6), cancel,
                         lambda e: cancel.set() if isinstance(e, Progress) and e.step == 2 else None)
    assert result is None and terminal(events) == [Cancelled()] and events[-1] == Cancelled()


def test_a_run_that_raises_ends_with_one_failed_of_its_kind(engine, make_request, tmp_path, monkeypatch):
    # bad input found once the model is known: the request's own message
    result, events = run(engine, make_request(width=8))
    assert isinstance(result, RequestError)
    assert terminal(events) == [Failed(FailureKind.BAD_INPUT, str(result))] and events[-1] == terminal(events)[0]
    # a model that is not there
    result, events = run(engine, make_request(model=str(tmp_path / "no-such-model")))
    assert isinstance(result, ModelError)
    assert terminal(events) == [Failed(FailureKind.MODEL_DAMAGED, str(result))]
    # a bug: the type and the message on one line, and the exception itself still reaches the caller
    def broken(self):
        raise RuntimeError("boom\n  in the noise")

    monkeypatch.setattr(run_steps.GenerationRun, "make_noise", broken)
    result, events = run(engine, make_request())
    assert isinstance(result, RuntimeError)
    assert terminal(events) == [Failed(FailureKind.INTERNAL, "RuntimeError: boom in the noise")]
    assert isinstance(events[-1].kind, FailureKind)


def test_progress_names_its_stage_denoise_then_upscale_tiles(engine, make_request):
    result, events = run(engine, make_request(steps=3, upscale="default", batch_size=2))
    stages = [(p.stage, p.step, p.total) for p in events if isinstance(p, Progress)]
    assert stages == [("denoise", 1, 3), ("denoise", 2, 3), ("denoise", 3, 3),
                      ("upscale", 1, 2), ("upscale", 2, 2)]  # one tile per image, counted over the batch
    assert events[-1] is result


def test_progress_of_the_hires_pass_is_hires(engine, make_request, tiny_sd_dir):
    result, events = run(engine, make_request(model=str(tiny_sd_dir), steps=4, hires_scale=2.0,
                                              hires_strength=0.5, batch_size=2))
    assert [(p.stage, p.step, p.total) for p in events if isinstance(p, Progress)] == \
        [("denoise", k, 4) for k in (1, 2, 3, 4)] + [("hires", k, 4) for k in (1, 2, 3, 4)]
    assert terminal(events) == [result]


# ---- Engine.upscale --------------------------------------------------------------------------------------


def test_an_upscale_job_ends_with_its_result_or_cancelled(engine, tiny_model_dir):
    own = str(tiny_model_dir / "upscaler" / "model.safetensors")
    events = []
    result = engine.upscale(UpscaleRequest(picture(), own, tile=0), emit=events.append)
    assert isinstance(result, Finished) and terminal(events) == [result] and events[-1] is result

    cancel = threading.Event()
    events = []

    def emit(event):
        events.append(event)
        if isinstance(event, Progress):
            assert event.stage == "upscale"
            cancel.set()

    assert engine.upscale(UpscaleRequest(picture(300, 200), own, tile=64), emit=emit, cancel=cancel) is None
    assert terminal(events) == [Cancelled()] and events[-1] == Cancelled()
    assert engine.upscale(UpscaleRequest(picture(), own), cancel=cancel) is None  # no emit: nothing to hear


def test_upscale_request_errors_come_before_any_upscaler_loads(tmp_path, monkeypatch, tiny_model_dir):
    from desktop_app.engine.generate import Engine

    def no_loading(*args, **kwargs):
        raise AssertionError("an upscaler was loaded")

    monkeypatch.setattr(upscale_job, "load_upscaler", no_loading)
    own = str(tiny_model_dir / "upscaler" / "model.safetensors")
    for changes, field in [({"source": ""}, "input"), ({"source": 3}, "input"), ({"tile": 10}, "tile"),
                           ({"tile": 5000}, "tile"), ({"scale": 0.5}, "scale"), ({"model": " "}, "upscale"),
                           ({"model_folder": ""}, "model_folder")]:
        with pytest.raises(RequestError) as info:
            UpscaleRequest(**({"source": picture(), "model": own} | changes))
        assert info.value.field == field, changes

    fresh, events = Engine(device="cpu"), []
    (tmp_path / "notes.png").write_text("not a picture")
    with pytest.raises(RequestError) as info:
        fresh.upscale(UpscaleRequest(tmp_path / "notes.png", own), emit=events.append)
    assert info.value.field == "input"
    assert events == [Failed(FailureKind.BAD_INPUT, str(info.value))]  # no "load" stage before it
    assert len(fresh._upscalers) == 0


def test_an_upscale_job_that_fails_ends_with_failed(engine, tmp_path):
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x80\x02}q\x00.")
    events = []
    with pytest.raises(ModelError) as info:
        engine.upscale(UpscaleRequest(picture(), str(fake)), emit=events.append)
    assert terminal(events) == [Failed(FailureKind.MODEL_DAMAGED, str(info.value))]
    events = []
    with pytest.raises(TypeError, match="UpscaleRequest"):
        engine.upscale(picture(), emit=events.append)  # the old keyword signature is gone
    assert [e.kind for e in terminal(events)] == [FailureKind.INTERNAL]
    assert not [e for e in events if isinstance(e, StageStarted)]


# ---- Outcome, alone --------------------------------------------------------------------------------------


def test_outcome_emits_exactly_one_terminal_event():
    events = []
    with Outcome(events.append) as outcome:
        outcome.result = Finished(images=[], seeds=[], recipe=generation_recipe(GenerationRequest("a cat")))
    assert events == [outcome.result]

    events = []
    with Outcome(events.append) as outcome:
        raise CancelledError("stop")
    assert outcome.result is None and events == [Cancelled()]

    events = []
    with Outcome(events.append):
        pass  # nothing finished: cancelled
    assert events == [Cancelled()]

    events = []
    with pytest.raises(KeyboardInterrupt), Outcome(events.append):
        raise KeyboardInterrupt
    assert events == []  # the process is going away: no event

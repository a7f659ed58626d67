"""Cancel stops within one step, reports Cancelled, and leaves the engine ready for the next run."""

from __future__ import annotations

import threading

from desktop_app.engine.events import Cancelled, Progress


def test_cancel_stops_at_once_and_the_next_run_works(generate, make_request):
    cancel = threading.Event()

    def cancel_at_step_two(event):
        if isinstance(event, Progress) and event.step == 2:
            cancel.set()

    result, events = generate(make_request(steps=8), cancel=cancel, emit=cancel_at_step_two)
    assert result is None
    assert [p.step for p in events.progress] == [1, 2]
    assert isinstance(events.events[-1], Cancelled)
    assert "decode" not in events.stages  # stopped before the VAE decode

    result, events = generate(make_request(steps=3))
    assert result is not None and len(events.progress) == 3 and not events.cancelled


def test_cancel_before_the_start_does_nothing(generate, make_request):
    cancel = threading.Event()
    cancel.set()
    result, events = generate(make_request(), cancel=cancel)
    assert result is None and events.stages == [] and events.cancelled


def test_cancel_during_the_last_step_skips_the_upscale(generate, make_request):
    cancel = threading.Event()

    def cancel_on_decode(event):
        if getattr(event, "stage", None) == "decode":
            cancel.set()

    result, events = generate(make_request(upscale="default"), cancel=cancel, emit=cancel_on_decode)
    assert result is None and events.cancelled and "upscale" not in events.stages

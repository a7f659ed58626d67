"""The run controller without a window: the queue, cancel, failures, saving what finished, the upscale job.

It runs the fake engine of conftest.py in its real worker threads; its signals are recorded in the order they
come, as the window would see them.
"""

from __future__ import annotations

import errno
import os

import pytest
from PIL import Image

from desktop_app.engine.request import GenerationRequest, UpscaleRequest
from desktop_app.errors import ModelError
from desktop_app.gui.run_controller import RunController, runs_of
from desktop_app.studio import outputs, png_recipe
from desktop_app.studio.history import History

SIGNALS = ("started", "stage", "progress", "cancelling", "finished", "upscaled", "failed", "cancelled",
           "run_ended", "notice", "status", "status_note", "kept", "queue_changed")


@pytest.fixture
def controller(qtbot, tmp_path, make_engine):
    """controller(engine=None) -> (a RunController on that engine, its log of (signal, *args)); closed after."""
    made = []

    def make(engine=None):
        saved = []
        settings = {"output_dir": str(tmp_path / "out")}
        run = RunController("cpu", lambda device: engine or make_engine(), settings,
                            lambda: saved.append(dict(settings)), History(tmp_path / "history.sqlite3"))
        run.saved_settings = saved
        log = []
        for name in SIGNALS:
            getattr(run, name).connect(lambda *args, name=name: log.append((name, *args)))
        made.append(run)
        return run, log

    yield make
    for run in made:
        run.close()


def names(log) -> list[str]:
    return [entry[0] for entry in log]


def ended(log) -> list[str]:
    return [entry[1] for entry in log if entry[0] == "run_ended"]


def request(prompt="a cat", steps=3, **changes) -> GenerationRequest:
    return GenerationRequest(prompt, steps=steps, seed=changes.pop("seed", 5), **changes)


def test_two_queued_runs_run_in_turn_and_their_images_are_kept(qtbot, controller, tmp_path):
    run, log = controller()
    run.enqueue(runs_of(request(batch_size=2), 2))
    assert run.running and len(run.queued()) == 1, "the first starts at once, the second waits"
    started = [entry[1] for entry in log if entry[0] == "started"]
    assert [r.seed for r in started] == [5]
    qtbot.waitUntil(lambda: ended(log) == ["finished", "finished"], timeout=20_000)
    assert [entry[1].seed for entry in log if entry[0] == "started"] == [5, 7], "run 2 starts at seed + batch"
    assert not run.running and run.queued() == []
    first = names(log)[: names(log).index("run_ended") + 1]
    assert first[:3] == ["queue_changed", "queue_changed", "started"], "queued, taken from the queue, started"
    assert first[-4:] == ["finished", "status_note", "kept", "run_ended"], "kept, then the run ends"
    assert {entry[5] for entry in log if entry[0] == "progress"} == {"denoise"}, "the stage travels with it"
    files = sorted((tmp_path / "out").glob("*.png"))
    assert len(files) == 4 and len(run.history.entries()) == 4
    assert png_recipe.read_recipe(files[0])["request"]["prompt"] == "a cat"
    assert run.result.seeds == [7, 8] and run.unsaved == [] and not run.holding


def test_cancel_stops_the_running_job_only(qtbot, controller, make_engine):
    engine = make_engine(delay=0.05)
    run, log = controller(engine)
    run.enqueue([request("first", steps=60), request("second")])
    qtbot.waitUntil(engine.started.is_set, timeout=10_000)
    run.cancel()
    run.cancel()  # twice: told once
    assert names(log).count("cancelling") == 1 and run.cancelling_now
    qtbot.waitUntil(lambda: ended(log) == ["cancelled", "finished"], timeout=20_000)
    assert [entry[0] for entry in log if entry[0] in ("cancelled", "finished")] == ["cancelled", "finished"]
    assert [e.prompt for e in run.history.entries()] == ["second"], "the cancelled run kept nothing"
    assert not run.cancelling_now


def test_a_failure_is_reported_and_the_queue_goes_on(qtbot, controller, make_engine):
    class FailsOnBroken(make_engine):
        def _generate(self, request, emit, cancel):
            if request.prompt == "broken":
                raise ModelError("The model folder /x has no unet.")
            return super()._generate(request, emit, cancel)

    run, log = controller(FailsOnBroken())
    run.enqueue([request("broken"), request("next")])
    qtbot.waitUntil(lambda: len(ended(log)) == 2, timeout=10_000)
    assert ended(log) == ["failed", "finished"]
    failed = next(entry for entry in log if entry[0] == "failed")
    assert failed[1:] == ("model", "The model folder /x has no unet.")
    assert [e.prompt for e in run.history.entries()] == ["next"]


def test_an_image_that_cannot_be_kept_holds_the_queue_until_it_is_saved(qtbot, controller, monkeypatch,
                                                                         tmp_path):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outputs, "keep_image", full)
    monkeypatch.setattr(outputs, "keep_elsewhere", full)  # no fallback folder either
    run, log = controller()
    run.enqueue([request("only copy"), request("waits")])
    qtbot.waitUntil(lambda: ended(log) == ["finished"], timeout=10_000)
    qtbot.wait(100)
    assert run.holding and len(run.unsaved) == 1 and [r.prompt for r in run.queued()] == ["waits"]
    title, text = next(entry[1:] for entry in log if entry[0] == "notice")
    assert title == "Could not keep the image" and "queue waits" in text and "No space left" in text
    assert ("status", "Not saved: No space left on device") in log
    assert any(entry[0] == "status" and entry[1].startswith("Queue paused") for entry in log)

    assert run.suggested_name(0).endswith(".png")
    saved = run.save_image(0, tmp_path / "kept.png")
    assert png_recipe.read_recipe(saved)["request"]["prompt"] == "only copy"
    assert not run.holding and run.unsaved == []
    qtbot.waitUntil(lambda: ended(log) == ["finished", "finished"], timeout=10_000)  # saved: the queue goes on


def test_the_request_is_remembered_in_the_settings(controller):
    run, _ = controller()
    run.remember(request("remember me", steps=9), runs=3)
    stored = run.saved_settings[-1]
    assert stored["last_request"]["prompt"] == "remember me" and stored["last_request"]["steps"] == 9
    assert "preview" not in stored["last_request"] and stored["runs"] == 3


def test_an_upscale_job_runs_in_its_own_worker(qtbot, controller, tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (24, 16), (30, 160, 90)).save(photo)
    run, log = controller()
    assert run.upscale(UpscaleRequest(str(photo)))
    assert not run.upscale(UpscaleRequest(str(photo))), "one job at a time"
    qtbot.waitUntil(lambda: ended(log) == ["finished"], timeout=10_000)
    assert "upscaled" in names(log) and "finished" not in names(log) and "kept" not in names(log)
    assert {entry[5] for entry in log if entry[0] == "progress"} == {"upscale"}
    assert run.result.images[0].size == (96, 64)
    assert run.suggested_name(0) == "photo-x4.png"
    assert run.would_replace_source(tmp_path / "photo.png") and not run.would_replace_source(tmp_path / "x.png")
    assert list((tmp_path / "out").glob("*.png")) == [], "an upscale is kept only by Save As"

"""The embedded model's UNet through OpenVINO on the CPU (engine/openvino_path.py), on the real embedded model:
converted once and read from the cache afterwards, an image within PSNR_DB of torch's for the same seed,
previews and cancel as before, and a broken cache file falling back to plain torch with one line."""

from __future__ import annotations

import logging
import threading

import pytest

pytest.importorskip("openvino")

from desktop_app.bench.cpu import psnr_images  # noqa: E402
from desktop_app.engine import openvino_path  # noqa: E402
from desktop_app.engine.events import Cancelled, Progress  # noqa: E402
from desktop_app.engine.request import GenerationRequest  # noqa: E402
from desktop_app.resources import default_model_dir  # noqa: E402

MODEL = default_model_dir()
# measured 2026-12-03: identical 8-bit images at 32 px, 4 steps (maxdiff of a UNet step ~1e-5); the bound
# leaves room for another CPU's rounding
PSNR_DB = 35.0

pytestmark = pytest.mark.skipif(not (MODEL / "model_index.json").exists(),
                                reason="the embedded model is not built")


@pytest.fixture(scope="module")
def cache_home(tmp_path_factory):
    """One user folder for the module, so the conversion happens once for all the tests."""
    return tmp_path_factory.mktemp("openvino-home")


@pytest.fixture
def path(cache_home, monkeypatch):
    """engine(path) -> a CPU engine with the embedded model loaded on "openvino" or "torch"."""
    from desktop_app.engine.generate import Engine

    monkeypatch.setenv("DESKTOP_APP_HOME", str(cache_home))
    monkeypatch.setattr(openvino_path, "WAIT_FOR_COMPILE", True)  # every step through OpenVINO, none in torch

    def engine(which: str):
        monkeypatch.setenv("DESKTOP_APP_CPU_PATH", which)
        engine = Engine(device="cpu", preview_share=None)
        engine.load(str(MODEL))
        return engine

    return engine


def request(**changes) -> GenerationRequest:
    # the model's default size: the one each load starts compiling in the background
    values = dict(prompt="a red apple", model=str(MODEL), width=64, height=64, steps=4, seed=5,
                  guidance_scale=7.0, sampler="DPM++ 2M")
    values.update(changes)
    return GenerationRequest(**values)


def run(engine, req, cancel=None, emit=None):
    events = []

    def both(event):
        events.append(event)
        if emit is not None:
            emit(event)

    return engine.run(req, both, cancel or threading.Event()), events


def test_converted_once_then_read_from_the_cache_and_close_to_torch(path):
    before = openvino_path.counts["conversions"]
    fast = path("openvino")
    assert openvino_path.installed(fast.model.pipe)
    assert openvino_path.counts["conversions"] == before + 1
    entry = openvino_path.entry_dir(fast.model.pipe.unet, MODEL)
    assert (entry / openvino_path.IR_NAME).exists() and (entry / "unet.bin").stat().st_size > 10_000_000

    again = path("openvino")  # a second load (a new engine, as after a restart) reads the IR
    assert openvino_path.installed(again.model.pipe)
    assert openvino_path.counts["conversions"] == before + 1
    result, _ = run(again, request())
    assert len(again.model.pipe.unet._openvino_runner.requests) >= 1  # compiled for the request's shapes

    plain = path("torch")
    assert not openvino_path.installed(plain.model.pipe)
    reference, _ = run(plain, request())
    measured = psnr_images(result.images[0], reference.images[0])
    assert measured is None or measured >= PSNR_DB, measured  # None: identical
    other, _ = run(plain, request(seed=6))  # and it is not a constant image
    assert psnr_images(other.images[0], reference.images[0]) < 30


def test_previews_and_cancel_still_work(path):
    engine = path("openvino")
    cancel = threading.Event()

    def cancel_at_two(event):
        if isinstance(event, Progress) and event.step == 2:
            cancel.set()

    result, events = run(engine, request(steps=6), cancel=cancel, emit=cancel_at_two)
    progress = [e for e in events if isinstance(e, Progress)]
    assert result is None and isinstance(events[-1], Cancelled)
    assert [p.step for p in progress] == [1, 2] and all(p.preview is not None for p in progress)
    result, events = run(engine, request(steps=3))
    assert result is not None and len([e for e in events if isinstance(e, Progress)]) == 3
    assert openvino_path.installed(engine.model.pipe)  # it ran through OpenVINO, not broken


def test_a_broken_cache_file_falls_back_to_torch_with_one_line(path, caplog):
    entry = openvino_path.entry_dir(path("openvino").model.pipe.unet, MODEL)  # converted (or read) once
    (entry / openvino_path.IR_NAME).write_text("<not an IR", encoding="utf-8")
    before = openvino_path.counts["conversions"]
    with caplog.at_level(logging.WARNING, logger="desktop_app.engine.openvino_path"):
        engine = path("openvino")
        assert not engine.model.pipe.unet._openvino_runner.ready()  # read in the background: found broken
    lines = [r.getMessage() for r in caplog.records if r.name == "desktop_app.engine.openvino_path"]
    assert len(lines) == 1 and "plain torch" in lines[0] and "\n" not in lines[0], lines
    assert not openvino_path.installed(engine.model.pipe)
    assert openvino_path.counts["conversions"] == before  # no conversion in that load
    assert not entry.exists()  # removed: the next load converts again
    result, _ = run(engine, request(steps=2))
    assert result is not None and result.images[0].size == (64, 64)


def test_steps_run_in_torch_while_a_new_size_compiles(path, monkeypatch):
    engine = path("openvino")
    monkeypatch.setattr(openvino_path, "WAIT_FOR_COMPILE", False)
    runner = engine.model.pipe.unet._openvino_runner
    result, _ = run(engine, request(width=96, height=96, steps=2))  # a size nothing compiled for yet
    assert result is not None and result.images[0].size == (96, 96)
    latent = 96 // engine.model.vae_scale_factor
    shapes = ((2, 4, latent, latent), (2,), (2, 20, 384))
    assert shapes in runner.requests or shapes in runner.pending  # compiling, or compiled, for the next image
    # 40 px: 10x10 latents, which the traced graph does not cover: torch runs them, nothing compiles
    reference, _ = run(path("torch"), request(width=40, height=40, steps=2))
    again, _ = run(engine, request(width=40, height=40, steps=2))
    assert psnr_images(again.images[0], reference.images[0]) is None  # torch's own image
    assert openvino_path.installed(engine.model.pipe)  # not broken
    odd = 40 // engine.model.vae_scale_factor
    assert not [key for key in (*runner.requests, *runner.pending) if key[0][2] == odd]


def test_the_setting_and_where_openvino_applies(monkeypatch):
    import torch

    from desktop_app.engine import device as devices
    from desktop_app.errors import RequestError

    cpu = torch.device("cpu")
    monkeypatch.setenv(devices.CPU_PATH_ENV, "openvino")
    assert devices.openvino_for(cpu, torch.float32, "embedded")
    assert not devices.openvino_for(cpu, torch.bfloat16, "embedded")  # bf16 weights: torch's own path
    assert not devices.openvino_for(cpu, torch.float32, "sd1")  # measured on the embedded model only
    assert not devices.openvino_for(torch.device("meta"), torch.float32, "embedded")
    monkeypatch.setenv(devices.CPU_PATH_ENV, "torch")
    assert not devices.openvino_for(cpu, torch.float32, "embedded")
    monkeypatch.setenv(devices.CPU_PATH_ENV, "auto")
    assert devices.openvino_for(cpu, torch.float32, "embedded") == devices.OPENVINO_DEFAULT
    monkeypatch.setenv(devices.CPU_PATH_ENV, "fast")
    with pytest.raises(RequestError, match="DESKTOP_APP_CPU_PATH|unknown CPU path"):
        devices.cpu_path_setting()


def test_the_bench_start_figure_on_both_paths(path):
    from desktop_app.bench import cpu_openvino
    from desktop_app.bench.common import Settings

    path("openvino")  # the cache is there
    settings = Settings(model=str(MODEL), device="cpu", quick=True)
    fast = cpu_openvino.start(settings, request(steps=2), "openvino")
    plain = cpu_openvino.start(settings, request(steps=2), "torch")
    assert fast["openvino"] and not plain["openvino"]
    for run_ in (fast, plain):
        assert 0 < run_["load_s"] < run_["first_image_s"]

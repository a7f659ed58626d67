"""CUDA checks, ready for a machine with an NVIDIA GPU and no network; skipped elsewhere.

    OMP_NUM_THREADS=4 .venv/bin/python -m pytest tests/engine/test_cuda.py -q
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from desktop_app.engine.events import Finished, Progress
from desktop_app.engine.request import SAMPLERS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def cuda_engine():
    from desktop_app.engine.generate import Engine

    return Engine(device="cuda", preview_share=None)


def _run(engine, request):
    events = []
    return engine.run(request, events.append, threading.Event()), events


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_sampler_gives_finite_images_in_half_precision(cuda_engine, make_request, sampler):
    result, events = _run(cuda_engine, make_request(sampler=sampler, steps=6, upscale="default"))
    assert cuda_engine.model.dtype in (torch.float16, torch.bfloat16)
    assert result.recipe.device.startswith("cuda")
    image = np.asarray(result.images[0], dtype=np.float32)
    assert image.shape == (128, 128, 3) and image.std() > 1.0  # not a black (NaN) image
    previews = [e.preview for e in events if isinstance(e, Progress) and e.stage == "denoise"]
    assert len(previews) == 6 and all(p is not None for p in previews)


def test_same_seed_same_pixels_on_cuda(cuda_engine, make_request):
    first, _ = _run(cuda_engine, make_request(seed=3))
    second, _ = _run(cuda_engine, make_request(seed=3))
    assert np.array_equal(np.asarray(first.images[0]), np.asarray(second.images[0]))


def test_without_bfloat16_the_embedded_model_runs_in_float32(make_request, tiny_sd_dir):
    # before Ampere there is no bfloat16; float16 would overflow in Euler's first step (sigma ~2e4 on the
    # embedded model's cosine schedule), so the small embedded model runs in float32 there
    from desktop_app.engine import device as devices
    from desktop_app.engine.generate import Engine

    engine = Engine(device="cuda")
    engine._choice = devices.DeviceChoice(torch.device("cuda"), torch.float16)
    result, _ = _run(engine, make_request(sampler="Euler", steps=6))
    assert result.recipe.dtype == "float32"
    assert np.asarray(result.images[0], dtype=np.float32).std() > 1.0
    other, _ = _run(engine, make_request(model=str(tiny_sd_dir)))
    assert other.recipe.dtype == "float16"


def test_upscale_job_tiles_in_half_precision_match_the_cpu(cuda_engine, tiny_model_dir):
    from PIL import Image

    from desktop_app.engine.generate import Engine
    from desktop_app.engine.request import UpscaleRequest

    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((150, 200, 4)) * 255).astype(np.uint8), "RGBA")
    own = str(tiny_model_dir / "upscaler" / "model.safetensors")
    on_gpu = cuda_engine.upscale(UpscaleRequest(image, own, tile=64))
    assert on_gpu.recipe.device.startswith("cuda") and on_gpu.recipe.dtype in ("float16", "bfloat16")
    on_cpu = Engine(device="cpu").upscale(UpscaleRequest(image, own, tile=0))
    gpu, cpu = (np.asarray(r.images[0], dtype=np.float32) for r in (on_gpu, on_cpu))
    assert gpu.shape == cpu.shape == (600, 800, 4)
    assert np.abs(gpu - cpu).mean() < 1.0  # half precision and tiles: within a level on average


def test_hires_fix_in_half_precision(cuda_engine, make_request, tiny_sd_dir):
    result, events = _run(cuda_engine, make_request(model=str(tiny_sd_dir), steps=4, hires_scale=2.0))
    image = np.asarray(result.images[0], dtype=np.float32)
    assert image.shape == (64, 64, 3) and np.isfinite(image).all()
    assert [e.stage for e in events if isinstance(e, Progress)] == ["denoise"] * 4 + ["hires"] * 2
    assert events[-1] is result and isinstance(result, Finished)


@pytest.mark.parametrize("sampler", ["Euler", "DPM++ 2M Karras"])
def test_sdxl_refiner_in_half_precision(cuda_engine, xl_request, sampler):
    result, events = _run(cuda_engine, xl_request(sampler=sampler, steps=8))
    assert cuda_engine.model.dtype in (torch.float16, torch.bfloat16)
    assert cuda_engine._refiner[2].pipe.unet.dtype == cuda_engine.model.dtype
    image = np.asarray(result.images[0], dtype=np.float32)
    assert image.shape == (32, 32, 3) and np.isfinite(image).all()
    steps = [e.step for e in events if isinstance(e, Progress)]
    assert steps == list(range(1, sum(result.recipe.refiner_model["steps"]) + 1))


@pytest.mark.parametrize("plan", ["model offload", "group offload", "sequential offload"])
def test_each_memory_plan_runs_and_gives_the_pixels_of_all_on_device(plan, monkeypatch, make_request, tiny_sd_dir):
    """The free memory is told small enough for ``plan`` (memory.device_free_bytes): the model loads on the CPU,
    runs offloaded, and draws what it draws with everything on the GPU."""
    from desktop_app.engine import memory, memory_plan
    from desktop_app.engine.generate import Engine

    request = make_request(model=str(tiny_sd_dir), sampler="Euler", steps=4, seed=5)
    whole = Engine(device="cuda", preview_share=None)
    reference, _ = _run(whole, request)
    assert reference.recipe.memory_plan == "all on device" and whole.plan.name == "all on device"
    whole.unload()

    weights = memory_plan.weights_on_disk(tiny_sd_dir, whole.dtype.itemsize)
    needs = memory_plan.plan_needs(weights, request.width, request.height, request.batch_size)
    monkeypatch.setattr(memory, "device_free_bytes", lambda device: needs[plan])
    engine = Engine(device="cuda", preview_share=None)
    result, events = _run(engine, request)
    assert engine.plan.name == plan and result.recipe.memory_plan == plan
    assert any(f"memory plan: {plan}" in line for line in result.recipe.notices)
    assert engine.model.device.type == "cuda" and result.recipe.device.startswith("cuda")
    # between runs the UNet waits in system memory (sequential offload leaves "meta" placeholders in the module)
    assert next(engine.model.pipe.unet.parameters()).device.type in ("cpu", "meta")
    previews = [e.preview for e in events if isinstance(e, Progress) and e.stage == "denoise"]
    assert len(previews) == 4 and all(p is not None for p in previews)
    difference = np.abs(np.asarray(result.images[0], np.float32) - np.asarray(reference.images[0], np.float32))
    assert difference.mean() < 2.0  # the same model on the same device: the same picture
    engine.unload()

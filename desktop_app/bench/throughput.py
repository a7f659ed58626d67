"""Section 5, throughput: images per second, and how much of the device's matrix-multiply rate the UNet uses.

Images per second at the model's native size and with its 4x upscale, previews off (as the command line
runs), one image per run. The UNet's FLOPs per denoising step are counted by torch's FlopCounterMode on the
UNet call the pipeline really makes (inputs captured from a run, classifier-free guidance's doubled batch
included); divided by the measured time per step, that is the rate achieved, set against the rate of a
large float32 matrix multiply timed in the same run.
"""

from __future__ import annotations

import time

from desktop_app.bench.common import Settings, median_of, ratio, spread

KEYS = ("native", "upscaled", "unet_flops_per_step", "step_s", "unet_call_s", "achieved_gflops",
        "matmul_gflops", "fraction_of_matmul", "settings")


def run(settings: Settings) -> dict:
    from desktop_app.engine.generate import Engine

    engine = Engine(settings.device)
    model = engine.load(settings.model)
    native = settings.request(preview=False)
    upscaled = settings.request(preview=False, upscale="default") if model.upscaler is not None else None

    def images_per_s(request) -> tuple[dict, dict, list]:
        engine.run(request, lambda e: None)  # warm-up
        seconds, denoise = [], []
        for k in range(settings.runs):
            start = time.perf_counter()
            finished = engine.run(request.with_seed(settings.seed + k), lambda e: None)
            seconds.append(time.perf_counter() - start)
            denoise.append(finished.timings["denoise"] / request.steps)
        return ({"images_per_s": round(1 / median_of(spread(seconds)), 3), "s_per_image": spread(seconds),
                 "size": list(finished.images[0].size)}, spread(denoise, 5), seconds)

    native_result, step_s, _ = images_per_s(native)
    upscaled_result = None
    if upscaled is not None:
        upscaled_result, _, _ = images_per_s(upscaled)

    flops, unet_call = unet_flops(engine, model, native, settings)
    matmul = matmul_gflops(engine.device, settings.quick)
    achieved = None if flops is None else round(flops / median_of(step_s) / 1e9, 2)
    return {
        "native": native_result,
        "upscaled": upscaled_result or f"not available: the model {model.display_name} has no upscaler",
        "unet_flops_per_step": flops, "step_s": step_s, "unet_call_s": unet_call,
        "achieved_gflops": achieved, "matmul_gflops": matmul,
        "fraction_of_matmul": ratio(achieved, median_of(matmul)),
        "settings": {"steps": native.steps, "size": [native.width, native.height], "batch": 1,
                     "previews": "off", "dtype": str(model.dtype).removeprefix("torch.")},
    }


def unet_flops(engine, model, request, settings: Settings) -> tuple[int | None, dict | None]:
    """FLOPs of one UNet call as the pipeline makes it, and that call's time alone."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    unet = model.pipe.unet
    captured: list = []

    def keep(module, args, kwargs):
        if not captured:
            captured.append((args, kwargs))

    handle = unet.register_forward_pre_hook(keep, with_kwargs=True)
    try:
        engine.run(request, lambda e: None)
    finally:
        handle.remove()
    if not captured:
        return None, None
    args, kwargs = captured[0]
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            unet(*args, **kwargs)
        seconds = []
        for _ in range(settings.runs):
            _sync(engine.device)
            start = time.perf_counter()
            unet(*args, **kwargs)
            _sync(engine.device)
            seconds.append(time.perf_counter() - start)
    return int(counter.get_total_flops()), spread(seconds, 5)


def matmul_gflops(device, quick: bool, dtype=None) -> dict:
    """The device's rate on a large square matrix multiply (float32 unless ``dtype``), in GFLOP/s."""
    import torch

    dtype = dtype or torch.float32
    n = 8192 if device.type == "cuda" else (1024 if quick else 2048)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.matmul(a, b)
    rates = []
    for _ in range(3 if quick else 7):
        _sync(device)
        start = time.perf_counter()
        torch.matmul(a, b)
        _sync(device)
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    result = spread(rates, 2)
    result["n"] = n
    return result


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)

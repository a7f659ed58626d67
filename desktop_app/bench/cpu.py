"""Section 9, the CPU: the path the processor offers (bf16 matrix units, channels-last) against float32 eager.

Three figures, each a ratio of medians measured side by side in one process, the candidates in turn (ABAB...)
after one warm-up each, so that the machine's load hits them alike:

- an SD 1.5-architecture UNet (the bundled config, random weights) at 512 px, batch 2 as for guidance, one
  call: each candidate path against float32 eager; with the UNet's FLOPs (FlopCounterMode), the fraction of
  the measured matrix-multiply rate (float32 and bfloat16) each path reaches;
- the model's whole image with its upscale through the real Engine: the dtype the engine picks on this CPU
  (``device.dtype_for_model``) and, for the embedded format, float32 with the UNet through OpenVINO
  (engine/openvino_path.py; not measured with ``DESKTOP_APP_CPU_PATH=torch`` or without openvino) against
  float32 eager, and the PSNR of each image against float32's, same seed; with OpenVINO, also the first image
  after a start: first use (conversion into an empty folder), cached start, torch (bench/cpu_openvino.py);
- the embedded upscaler on a 256 px image (``upscale_image``, as the engine calls it), each candidate.

The candidates: float32 with channels-last always; bfloat16 weights (and with channels-last) only where the
CPU has bf16 matrix units, because without them oneDNN's bf16 runs on a reference path two orders of
magnitude slower (the section says so, with both matmul rates). ``chosen_path`` is the engine's own choice
(``device.cpu_path``); the figures say whether it pays. torch.compile is not a candidate: on the 2-core
machine the embedded UNet took 114 s to compile and was no faster afterwards.
"""

from __future__ import annotations

import copy
import math
import os
import time
from contextlib import contextmanager

from desktop_app.bench.common import Settings, interleave, median_of, ratio, spread
from desktop_app.bench.cpu_openvino import startup

KEYS = ("embedded_ratio", "sd15_step_ratio", "upscaler_ratio", "chosen_path", "psnr_db", "why", "bf16_units",
        "matmul_gflops", "sd15", "embedded", "upscaler", "psnr_parts", "settings", "first_use_s", "cached_start_s",
        "torch_start_s")
TARGETS = {"embedded_ratio": 0.5, "sd15_step_ratio": 0.2, "upscaler_ratio": 0.5}
# a tiny UNet of the same architecture, for --quick and the tests (channels divisible by the 32 norm groups)
TINY_UNET = {"block_out_channels": [32, 32, 64, 64], "layers_per_block": 1, "cross_attention_dim": 32,
             "attention_head_dim": 4}


def run(settings: Settings, *, sd_size: int | None = None, sd_config: dict | None = None,
        upscale_px: int | None = None, rounds: int | None = None, bf16: bool | None = None) -> dict:
    """The section. ``sd_size`` (pixels), ``sd_config`` (changes to the bundled SD 1.5 UNet config),
    ``upscale_px``, ``rounds`` (ABAB rounds) default to the full figures, or to tiny ones with --quick;
    ``bf16`` forces the bfloat16 candidates in or out (None: where the CPU has bf16 units)."""
    import torch

    from desktop_app.engine import device as devices

    quick = settings.quick
    sd_size = sd_size or (64 if quick else 512)
    sd_config = TINY_UNET if sd_config is None and quick else (sd_config or {})
    upscale_px = upscale_px or (32 if quick else 256)
    rounds = rounds or (2 if quick else 4)
    path = devices.cpu_path()
    use_bf16 = path["bf16_units"] if bf16 is None else bf16
    dtypes = [torch.float32] + ([torch.bfloat16] if use_bf16 else [])
    # bf16 without units runs at ~1 GFLOP/s: a small multiply says so without minutes of waiting
    matmul = {str(d).removeprefix("torch."): matmul_gflops(d, 256 if quick or (d == torch.bfloat16 and not
                                                                                 path["bf16_units"]) else 1024)
              for d in (torch.float32, torch.bfloat16)}
    skipped = None if use_bf16 else (
        f"bfloat16 not measured (matmul bfloat16 {median_of(matmul['bfloat16'])} GFLOP/s at n=256 against "
        f"float32 {median_of(matmul['float32'])})")

    sd15 = sd15_step(sd_size, sd_config, dtypes, rounds, matmul)
    embedded = whole_image(settings, rounds, use_bf16)
    upscaler = upscaler_run(embedded.pop("image_fp32"), upscale_px, dtypes, rounds)
    startup = embedded.get("startup") or {}
    openvino = None
    if embedded.get("dtype") == "openvino":
        openvino = (f"OpenVINO float32, {devices.CPU_PATH_ENV}={devices.cpu_path_setting()} (whole image "
                    f"{embedded.get('ratio')} of torch's, first image after a cached start "
                    f"{startup.get('cached_first_image_ratio')} of torch's)")
    psnr = {"embedded_image": embedded.get("psnr_db"), "sd15_step": sd15.get("psnr_db"),
            "upscaler": upscaler.get("psnr_db")}
    return {
        "embedded_ratio": embedded.get("ratio"), "sd15_step_ratio": sd15.get("ratio"),
        "upscaler_ratio": upscaler.get("ratio"),
        "chosen_path": (f"large models {path['large_models']}, small models (the embedded one) "
                        f"{path['small_models']}" + (", its UNet through OpenVINO" if openvino else "")),
        "psnr_db": embedded.get("psnr_db"), "why": path["why"] + (f"; {skipped}" if skipped else "")
        + (f"; the embedded model's UNet: {openvino}" if openvino else "")
        + (f"; {embedded['openvino_status']}" if embedded.get("openvino_status") else ""),
        "first_use_s": startup.get("first_use_first_image_s"),
        "cached_start_s": startup.get("cached_first_image_s"), "torch_start_s": startup.get("torch_first_image_s"),
        "bf16_units": path["bf16_units"], "matmul_gflops": matmul, "sd15": sd15, "embedded": embedded,
        "upscaler": upscaler, "psnr_parts": psnr,
        "settings": {"sd15_size": sd_size, "sd15_batch": 2, "sd15_config_changes": sd_config or None,
                     "upscale_px": upscale_px, "rounds": rounds, "threads": torch.get_num_threads(),
                     "targets": TARGETS},
    }


# ---- the SD 1.5 UNet step ---------------------------------------------------------------------------------


def sd15_unet(changes: dict | None = None):
    """An SD 1.5-architecture UNet from the bundled config (with ``changes``), random weights, float32."""
    import json

    from diffusers import UNet2DConditionModel

    from desktop_app.resources import resources_dir

    config = json.loads((resources_dir() / "configs" / "sd1" / "unet" / "config.json").read_text("utf-8"))
    config.update(changes or {})
    config = {key: value for key, value in config.items() if not key.startswith("_")}
    return UNet2DConditionModel.from_config(config).eval()


def candidates(dtypes) -> list[tuple[str, object, bool]]:
    """(name, dtype, channels_last) for each path measured, float32 eager first."""
    out = []
    for dtype in dtypes:
        label = str(dtype).removeprefix("torch.")
        out += [(label, dtype, False), (f"{label}+channels_last", dtype, True)]
    return out


def sd15_step(size: int, changes: dict, dtypes, rounds: int, matmul: dict) -> dict:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    torch.manual_seed(0)
    base = sd15_unet(changes)
    latent = size // 8
    sample = torch.randn(2, base.config.in_channels, latent, latent)
    context = torch.randn(2, 77, base.config.cross_attention_dim)
    timestep = torch.tensor(500)
    runs, outputs = {}, {}
    with torch.inference_mode():
        counter = FlopCounterMode(display=False)
        with counter:
            reference = base(sample, timestep, encoder_hidden_states=context).sample  # also the warm-up
        flops = int(counter.get_total_flops())
        for name, dtype, channels_last in candidates(dtypes):
            unet = base if (dtype, channels_last) == (torch.float32, False) else _converted(base, dtype,
                                                                                            channels_last)
            args = _inputs(sample, context, dtype, channels_last)
            runs[name] = _caller(unet, args, timestep)
            outputs[name] = runs[name]().float()  # warm-up, and the output for PSNR
        times = interleave(runs, rounds)
    result = _compare(times, outputs, reference, flops, matmul)
    result.update(flops_per_step=flops, size=size, params_m=round(sum(p.numel() for p in base.parameters()) / 1e6,
                                                                     1))
    return result


def _converted(module, dtype, channels_last: bool):
    import torch

    # torch's own .to: diffusers' warns about fp32 modules on every cast, and this UNet keeps none
    module = torch.nn.Module.to(copy.deepcopy(module), dtype)
    return torch.nn.Module.to(module, memory_format=torch.channels_last) if channels_last else module


def _inputs(sample, context, dtype, channels_last: bool):
    import torch

    sample = sample.to(dtype)
    if channels_last:
        sample = sample.contiguous(memory_format=torch.channels_last)
    return sample, context.to(dtype)


def _caller(unet, args, timestep):
    sample, context = args
    return lambda: unet(sample, timestep, encoder_hidden_states=context).sample


def _compare(times: dict, outputs: dict, reference, flops: int, matmul: dict) -> dict:
    """Per candidate: its spread, ratio to float32 eager, PSNR of its output, fraction of its dtype's matmul
    rate; the fastest one's ratio and PSNR as the section's figure."""
    base = median_of(spread(times["float32"]))
    paths = {}
    for name, seconds in times.items():
        median = median_of(spread(seconds))
        rate = matmul.get(name.split("+")[0])
        achieved = flops / median / 1e9 if median else None
        paths[name] = {"s": spread(seconds), "ratio": ratio(median, base),
                       "psnr_db": None if name == "float32" else psnr(outputs[name], reference),
                       "gflops": None if achieved is None else round(achieved, 2),
                       "fraction_of_matmul": ratio(achieved, median_of(rate))}
    fastest = min(paths, key=lambda name: paths[name]["ratio"] if name != "float32" else math.inf)
    return {"paths": paths, "fastest": fastest, "ratio": paths[fastest]["ratio"],
            "psnr_db": paths[fastest]["psnr_db"],
            "fraction_fp32": paths["float32"]["fraction_of_matmul"],
            "fraction_fastest": paths[fastest]["fraction_of_matmul"]}


# ---- the whole image through the Engine -------------------------------------------------------------------


@contextmanager
def cpu_dtype(dtype):
    """``DESKTOP_APP_CPU_DTYPE`` set to ``dtype`` for the block (the engine reads it when it loads)."""
    from desktop_app.engine.device import CPU_DTYPE_ENV

    before = os.environ.get(CPU_DTYPE_ENV)
    os.environ[CPU_DTYPE_ENV] = str(dtype).removeprefix("torch.")
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(CPU_DTYPE_ENV, None)
        else:
            os.environ[CPU_DTYPE_ENV] = before


def engine_dtype(model: str):
    """The dtype the engine runs ``model`` in on this CPU (``device.dtype_for_model``)."""
    from desktop_app.engine import device as devices
    from desktop_app.engine.memory_plan import weights_on_disk
    from desktop_app.models.model_folder import check_folder

    components = weights_on_disk(check_folder(model), 4).components
    return devices.dtype_for_model(devices.resolve("cpu"), max(components.values(), default=0))


def whole_image(settings: Settings, rounds: int, bf16: bool) -> dict:
    """The model's image with its upscale, fp32 eager torch against the engine's choice (and bfloat16 where
    measured, and "openvino": float32 with the UNet through OpenVINO, where openvino is installed and the model
    is in the embedded format)."""
    import torch

    from desktop_app.bench.cpu_openvino import available, env
    from desktop_app.engine import device as devices
    from desktop_app.engine import openvino_path
    from desktop_app.engine.generate import Engine

    chosen = engine_dtype(settings.model)
    paths = [(str(d).removeprefix("torch."), d, "torch") for d in dict.fromkeys(
        [torch.float32] + [d for d in (chosen, torch.bfloat16 if bf16 else None) if d is not None])]
    missing = available()
    if devices.cpu_path_setting() == "torch":
        missing = f"{devices.CPU_PATH_ENV}=torch: OpenVINO not measured"
    if missing is None:
        paths.append(("openvino", torch.float32, "openvino"))
    engines, calls, images = {}, {}, {}
    for name, dtype, runner in paths:
        with cpu_dtype(dtype), env(devices.CPU_PATH_ENV, runner):
            engines[name] = Engine("cpu")
            model = engines[name].load(settings.model)
        if runner == "openvino" and not (openvino_path.installed(model.pipe)
                                         and model.pipe.unet._openvino_runner.ready()):
            missing = f"the OpenVINO path did not install for {model.family} models (see the log line)"
            del engines[name]
            continue
        request = settings.request(preview=False, upscale="default" if model.upscaler is not None else None)

        def call(engine=engines[name], dtype=dtype, request=request):
            with cpu_dtype(dtype):
                return engine.run(request, lambda event: None).images[0]

        calls[name] = call
        images[name] = call()  # warm-up, and the image for PSNR
    times = interleave(calls, rounds)
    base = median_of(spread(times["float32"]))
    chosen_name = str(chosen).removeprefix("torch.")
    if "openvino" in calls and devices.openvino_for(torch.device("cpu"), chosen, model.family):
        chosen_name = "openvino"
    out = {"dtype": chosen_name, "size": list(images["float32"].size), "upscale": request.upscale,
           "paths": {name: {"s": spread(seconds), "ratio": ratio(median_of(spread(seconds)), base),
                            "psnr_db": None if name == "float32" else psnr_images(images[name],
                                                                                  images["float32"])}
                     for name, seconds in times.items()},
           "image_fp32": images["float32"], "openvino_status": missing,
           "startup": startup(settings, request, rounds) if "openvino" in calls else None}
    if chosen_name == "float32":
        out["status"] = "the engine's path for this model on this CPU is float32, today's path"
        out["ratio"], out["psnr_db"] = None, None
    else:
        out["ratio"], out["psnr_db"] = out["paths"][chosen_name]["ratio"], out["paths"][chosen_name]["psnr_db"]
    return out


# ---- the embedded upscaler --------------------------------------------------------------------------------


def upscaler_run(image, size: int, dtypes, rounds: int) -> dict:
    """The embedded model's upscaler on ``image`` resized to ``size`` px, each candidate, untiled as at the
    engine's default tile for this size."""
    import numpy as np
    import torch

    from desktop_app.engine.upscale import load_upscaler, upscale_image
    from desktop_app.models.model_folder import upscaler_path
    from desktop_app.resources import default_model_dir

    source = image.convert("RGB").resize((size, size))
    base = load_upscaler(upscaler_path(default_model_dir()), "cpu", torch.float32)
    calls, outputs = {}, {}
    for name, dtype, channels_last in candidates(dtypes):
        descriptor = copy.deepcopy(base)
        descriptor.model.to(dtype)
        if channels_last:
            descriptor.model.to(memory_format=torch.channels_last)
        calls[name] = (lambda d=descriptor: upscale_image(d, source))
        with torch.inference_mode():
            outputs[name] = np.asarray(calls[name]())
    with torch.inference_mode():
        times = interleave(calls, rounds)
    base_s = median_of(spread(times["float32"]))
    paths = {name: {"s": spread(seconds), "ratio": ratio(median_of(spread(seconds)), base_s),
                    "psnr_db": None if name == "float32" else psnr_images(outputs[name], outputs["float32"])}
             for name, seconds in times.items()}
    fastest = min((name for name in paths if name != "float32"), key=lambda name: paths[name]["ratio"])
    return {"paths": paths, "fastest": fastest, "ratio": paths[fastest]["ratio"],
            "psnr_db": paths[fastest]["psnr_db"], "size": [size, size],
            "output": list(outputs["float32"].shape[1::-1])}


# ---- measures ---------------------------------------------------------------------------------------------


def matmul_gflops(dtype, n: int) -> dict:
    """This CPU's rate on an n x n matrix multiply in ``dtype``, GFLOP/s (one warm-up, then three)."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.matmul(a, b)
    rates = []
    for _ in range(3):
        start = time.perf_counter()
        torch.matmul(a, b)
        rates.append(2 * n**3 / (time.perf_counter() - start) / 1e9)
    return {**spread(rates, 2), "n": n}


def psnr(test, reference) -> float | None:
    """PSNR in dB of a tensor against a reference, the reference's range as the peak (None: identical)."""
    test, reference = test.double(), reference.double()
    mse = float(((test - reference) ** 2).mean())
    peak = float(reference.max() - reference.min())
    if mse == 0 or peak == 0:
        return None
    return round(10 * math.log10(peak**2 / mse), 2)


def psnr_images(test, reference) -> float | None:
    """PSNR in dB of two 8-bit images (PIL or arrays) of the same size (None: identical)."""
    import numpy as np

    a = np.asarray(test, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    mse = float(((a - b) ** 2).mean())
    return None if mse == 0 else round(10 * math.log10(255.0**2 / mse), 2)

"""Section 9's OpenVINO figures: what the embedded model's OpenVINO UNet (engine/openvino_path.py) costs before
the first image, against plain torch.

Each start is a new Engine in this process (the imports already done): the model's load plus its first image
at the model's defaults with the upscale. First use converts into an empty user folder (a temporary one: the
user's own cache is left alone); a cached start reads the IR that the first use saved; torch is the plain path.
The cached starts and torch's alternate (ABAB), median of ``rounds``.
"""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import contextmanager

from desktop_app.bench.common import median_of, ratio, spread


@contextmanager
def env(name: str, value: str | None):
    """The environment variable ``name`` set to ``value`` (None: unset) for the block."""
    before = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = before


def available() -> str | None:
    """None when openvino imports, else why not (one line)."""
    try:
        import openvino  # noqa: F401
    except ImportError as exc:
        return f"openvino is not installed ({exc}); pip install openvino, or the cpu-fast extra"
    return None


def start(settings, request, path: str) -> dict:
    """One start on ``path`` ("torch" or "openvino"): seconds to load, to the first image, and whether the
    OpenVINO path was on."""
    from desktop_app.engine import openvino_path
    from desktop_app.engine.device import CPU_PATH_ENV
    from desktop_app.engine.generate import Engine

    with env(CPU_PATH_ENV, path):
        begin = time.perf_counter()
        engine = Engine("cpu")
        model = engine.load(settings.model)
        loaded = time.perf_counter()
        engine.run(request, lambda event: None)
        done = time.perf_counter()
    runner = getattr(model.pipe.unet, "_openvino_runner", None)
    if runner is not None:  # untimed: its background compile must not slow the next start down
        runner.ready()
    on = openvino_path.installed(model.pipe)
    engine.unload()
    return {"load_s": loaded - begin, "first_image_s": done - begin, "openvino": on}


def startup(settings, request, rounds: int) -> dict:
    """First-use conversion and cached start-up of the OpenVINO path against torch's start (seconds)."""
    from desktop_app.engine import openvino_path

    missing = available()
    if missing:
        return {"status": missing}
    with tempfile.TemporaryDirectory(prefix="desktop-app-bench-openvino-") as home, env("DESKTOP_APP_HOME", home):
        converted = openvino_path.counts["conversions"]
        first = start(settings, request, "openvino")
        first["converted"] = openvino_path.counts["conversions"] > converted
        runs: dict[str, list[dict]] = {"torch": [], "openvino": []}
        for _ in range(rounds):
            for path in runs:
                runs[path].append(start(settings, request, path))
        cached_conversions = openvino_path.counts["conversions"] - converted - 1
    torch_first = median_of(spread([r["first_image_s"] for r in runs["torch"]]))
    cached_first = median_of(spread([r["first_image_s"] for r in runs["openvino"]]))
    return {
        "first_use_load_s": round(first["load_s"], 3), "first_use_first_image_s": round(first["first_image_s"], 3),
        "first_use_converted": first["converted"], "first_use_openvino": first["openvino"],
        "cached_load_s": spread([r["load_s"] for r in runs["openvino"]]),
        "cached_first_image_s": spread([r["first_image_s"] for r in runs["openvino"]]),
        "torch_load_s": spread([r["load_s"] for r in runs["torch"]]),
        "torch_first_image_s": spread([r["first_image_s"] for r in runs["torch"]]),
        "cached_first_image_ratio": ratio(cached_first, torch_first),
        "conversions_in_cached_starts": cached_conversions,
        "cached_openvino": all(r["openvino"] for r in runs["openvino"]),
    }

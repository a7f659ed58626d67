"""How fast the embedded 4x upscaler runs here: output megapixels per second, untiled and tiled.

    OMP_NUM_THREADS=2 .venv/bin/python tests/engine/benchmark_upscale.py [--device cpu] [--model PATH]
        [--sizes 64,256,384] [--tile 160] [--repeats 3]

Without --model it measures the embedded model's upscaler (resources/models/emoji-mini/upscaler); when that
is missing it says so and measures the tiny random upscaler the tests use (same code path, other figures).
The tiled column also shows what tiling costs (overlap is computed twice). Not collected by pytest: timings
are reported, never asserted. Under a minute on two busy CPU cores with the defaults.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for tiny_models

from desktop_app.engine import device as devices  # noqa: E402
from desktop_app.models.model_folder import upscaler_path  # noqa: E402
from desktop_app.engine.upscale import load_upscaler, plan, upscale_image  # noqa: E402
from desktop_app.resources import default_model_dir  # noqa: E402


def picture(side: int) -> Image.Image:
    y, x = np.mgrid[0:side, 0:side].astype(np.float32)
    rgb = np.stack([np.sin(x / 9 + k) * np.cos(y / 7 - k) for k in range(3)], -1) * 0.45 + 0.5
    return Image.fromarray((rgb * 255).astype(np.uint8))


def timed(descriptor, image, tile, repeats) -> float:
    """The median of ``repeats`` runs, after one untimed run (oneDNN prepares its kernels per shape)."""
    upscale_image(descriptor, image, tile=tile)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        upscale_image(descriptor, image, tile=tile)
        if descriptor.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--model", help="an upscaler file (default: the embedded model's)")
    parser.add_argument("--sizes", default="64,256,384", help="square input sides, comma separated")
    parser.add_argument("--tile", type=int, default=160, help="tile side for the tiled column")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    path = Path(args.model) if args.model else upscaler_path(default_model_dir())
    label = str(path) if path else ""
    if path is None:
        from tiny_models import build_upscaler

        path = build_upscaler(Path(tempfile.mkdtemp()) / "tiny.safetensors")
        label = "the tiny random test upscaler"
        print(f"The embedded upscaler is missing ({default_model_dir() / 'upscaler'}): measuring {label} "
              "instead; its figures say nothing about the real model.")
    choice = devices.resolve(args.device)
    descriptor = load_upscaler(path, choice.device, choice.dtype)
    params = sum(p.numel() for p in descriptor.model.parameters())
    print(f"upscaler: {label} ({descriptor.architecture.name}, {descriptor.scale}x, {params / 1e3:.0f}k "
          f"parameters) on {choice.describe()}, torch threads {torch.get_num_threads()}")

    print(f"{'input':>9} {'output':>11} {'untiled s':>10} {'MP/s':>7} {'tiles':>6} {'tiled s':>8} {'MP/s':>7}")
    rates = []
    for side in (int(s) for s in args.sizes.split(",")):
        image = picture(side)
        out_mp = (side * descriptor.scale) ** 2 / 1e6
        whole = timed(descriptor, image, 0, args.repeats)
        tiles = plan(descriptor, image, args.tile)
        tiled = timed(descriptor, image, args.tile, args.repeats) if tiles > 1 else whole
        rates.append(out_mp / whole)
        out = f"{side * descriptor.scale}x{side * descriptor.scale}"
        print(f"{side:>4}x{side:<4} {out:>11} {whole:>10.3f} {out_mp / whole:>7.2f} {tiles:>6} {tiled:>8.3f} "
              f"{out_mp / tiled:>7.2f}")
    print(f"megapixels per second (output, untiled, largest size): {rates[-1]:.2f}")


if __name__ == "__main__":
    main()

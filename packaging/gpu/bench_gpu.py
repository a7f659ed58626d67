"""The GPU section of ``desktop-app bench`` on a CUDA machine with no network.

    python packaging/gpu/bench_gpu.py OUT_FOLDER [--quick] [--no-fast] [--no-compile] [--models sd15_512,sdxl_1024]

Needs torch (with CUDA), diffusers and transformers, and this repository checked out (the script puts the
repository root on sys.path and runs ``desktop_app/bench/gpu.py``; our engine's figures come from
``desktop_app.engine``, and when that cannot be imported the bare diffusers figures still do). Nothing is
downloaded: SD1.5 (512x512) and SDXL (1024x1024) are built with random weights from their published
configs. Writes OUT_FOLDER/bench_gpu.json and prints a short summary. About 5 minutes on an H100-class GPU
(torch.compile of the SDXL UNet is most of it); --quick runs fewer repeats.

``--tiny --device cpu`` runs the same code on tiny configs on the CPU: a plumbing check, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="folder to write bench_gpu.json into (created if missing)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--no-fast", action="store_true", help="skip the fast mode (channels_last, compile)")
    parser.add_argument("--no-compile", action="store_true", help="fast mode without torch.compile")
    parser.add_argument("--models", default="sd15_512,sdxl_1024", help="comma-separated: sd15_512, sdxl_1024")
    parser.add_argument("--tiny", action="store_true", help="tiny configs (with --device cpu: a plumbing check)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("DESKTOP_APP_HOME", str(Path(args.out).expanduser().resolve() / "home"))
    sys.path.insert(0, str(ROOT))

    import torch

    from desktop_app.bench import gpu

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        result = gpu.skipped()
    else:
        models = tuple(name.strip() for name in args.models.split(",") if name.strip())
        unknown = set(models) - set(gpu.MODELS)
        if unknown:
            parser.error(f"unknown model(s) {', '.join(sorted(unknown))}; choose from {', '.join(gpu.MODELS)}")
        start = time.perf_counter()
        result = gpu.measure(args.device, quick=args.quick, tiny=args.tiny, fast=not args.no_fast,
                             compile_unet=not args.no_compile, models=models)
        result["seconds"] = round(time.perf_counter() - start, 1)
    result["date"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    result["command"] = " ".join([Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])])
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    path = out / "bench_gpu.json"
    path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print(summary(result))
    print(f"wrote {path}")
    return 0


def summary(result: dict) -> str:
    lines = [f"status: {result['status']}; device: {result.get('device')}",
             f"matmul TFLOP/s: {json.dumps(result.get('matmul_tflops'))}"]
    for name in ("sd15_512", "sdxl_1024"):
        model = result.get(name) or {}
        if model.get("error"):
            lines.append(f"{name}: {model['error']}")
            continue
        for mode in ("standard", "fast"):
            run = model.get(mode) or {}
            ours, bare = run.get("ours_s"), run.get("bare_s")
            if isinstance(bare, dict):
                ours_text = f"{ours['median']:.3f} s" if isinstance(ours, dict) else str(ours)
                lines.append(f"{name} {mode}: ours {ours_text}/image, bare {bare['median']:.3f} s/image, "
                             f"ratio {run.get('ratio')}, {run.get('it_per_s')} it/s, "
                             f"{run.get('fraction_of_matmul')} of the fp16 matmul rate, "
                             f"peak {run.get('peak_gpu_mb')} MB")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())

"""``desktop-app bench``: the benchmarks (docs/PERFORMANCE.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from desktop_app.cli.errors import EXIT_OK, BadInput
from desktop_app.cli.options import model_options


def register(commands) -> None:
    bench = commands.add_parser("bench", help="measure speed, responsiveness, start-up and memory",
                                description="Benchmarks (medians and spread over several runs): engine overhead "
                                            "against bare diffusers, preview cost, window responsiveness, "
                                            "start-up, throughput against the device's matmul rate, memory, "
                                            "on CUDA the SD1.5/SDXL section, and the CPU path (bf16 units, "
                                            "channels-last) against float32. Takes minutes; --quick is a "
                                            "short plumbing check.")
    model_options(bench)
    bench.add_argument("--quick", action="store_true", help="fewer runs and steps (a check, not a measurement)")
    bench.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    bench.add_argument("--out", metavar="FILE", help="also write the JSON report to FILE")
    bench.add_argument("--only", "--sections", dest="only", metavar="SECTIONS",
                       help="comma-separated sections to run (overhead, previews, responsiveness, startup, "
                            "throughput, memory, training, gpu, cpu); the others keep their keys, marked not run")
    for name, what in (("width", "image width"), ("height", "image height"), ("steps", "denoising steps")):
        bench.add_argument(f"--{name}", type=int, metavar="N",
                           help=f"{what} instead of the model's default (e.g. a small size for a model "
                                f"that declares 1024x1024)")


def bench(args: argparse.Namespace) -> int:
    from desktop_app.bench import report  # lazy: the bench loads torch, and Qt in its child processes only
    from desktop_app.bench.common import Settings

    only = [name.strip() for name in (args.only or "").split(",") if name.strip()]
    unknown = sorted(set(only) - set(report.SECTIONS))
    if unknown:
        raise BadInput(f"--only: unknown section(s) {', '.join(unknown)}; choose from "
                       f"{', '.join(report.SECTIONS)}")
    from desktop_app.engine.device import choose_device

    choose_device(args.device)  # a device that is not there: exit 2 before minutes of work
    overrides = {name: getattr(args, name) for name in ("width", "height", "steps")
                 if getattr(args, name) is not None}
    for name, value in overrides.items():
        if value < 1:
            raise BadInput(f"--{name} must be a positive number, got {value}")
    settings = Settings(model=args.model, device=args.device, quick=args.quick, overrides=overrides)
    result = report.run_all(settings, only=only or None,
                            progress=lambda line: print(line, file=sys.stderr, flush=True))
    if args.out:
        report.write(result, Path(args.out).expanduser())
    print(json.dumps(result) if args.json else report.format_table(result))
    return EXIT_OK


run = bench  # the command's entry point, as in every command module

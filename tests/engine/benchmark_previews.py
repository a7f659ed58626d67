"""What live previews cost: the same generation with and without previews, as a ratio measured in one run.

    OMP_NUM_THREADS=2 .venv/bin/python tests/engine/benchmark_previews.py [--model default] [--steps 20]

Not collected by pytest (timings are reported, never asserted).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

from desktop_app.engine.generate import Engine
from desktop_app.models.resolve import model_defaults
from desktop_app.engine.request import GenerationRequest


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--every-step", action="store_true", help="no pacing: a preview after every step")
    args = parser.parse_args()
    declared = model_defaults(args.model)
    engine = Engine(args.device, preview_share=None) if args.every_step else Engine(args.device)
    base = GenerationRequest("a red apple", seed=1, model=args.model, steps=args.steps,
                             width=int(declared.get("width", 64)), height=int(declared.get("height", 64)))
    engine.run(base, lambda e: None, threading.Event())  # load and warm up
    times = {True: [], False: []}
    for _ in range(args.repeats):
        for preview in (False, True):  # interleaved, so drift in machine load hits both alike
            request = GenerationRequest.from_dict(base.to_dict() | {"preview": preview})
            start = time.perf_counter()
            engine.run(request, lambda e: None, threading.Event())
            times[preview].append(time.perf_counter() - start)
    off, on = statistics.median(times[False]), statistics.median(times[True])
    pacing = "every step" if args.every_step else f"paced at {engine.preview_share}"
    print(f"{engine.model.display_name} on {engine.describe_device()}, {args.steps} steps, "
          f"previews {pacing}, {base.width}x{base.height}: without previews {off:.3f}s, "
          f"with previews {on:.3f}s, ratio {on / off:.2f}")


if __name__ == "__main__":
    main()

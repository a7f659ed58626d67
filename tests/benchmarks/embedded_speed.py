"""Speed bars of the embedded default model on this machine (issue: embedded default model).

    .venv/bin/python tests/benchmarks/embedded_speed.py

Prints: load time; one 64x64 image at the default steps plus the 4x upscale (median of 7, after a warm-up);
and `desktop-app generate` end to end (process start to PNG written, median of 3). Not collected by pytest.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def main() -> None:
    t0 = time.perf_counter()
    from desktop_app.engine.generate import Engine
    from desktop_app.engine.request import GenerationRequest
    import_s = time.perf_counter() - t0

    engine = Engine(device="cpu")
    t0 = time.perf_counter()
    engine.load("default")
    load_s = time.perf_counter() - t0

    def one(seed: int) -> float:
        req = GenerationRequest(prompt="a red apple", seed=seed, upscale="default")
        start = time.perf_counter()
        engine.run(req, lambda e: None, threading.Event())
        return time.perf_counter() - start

    one(0)
    per_image = [one(s) for s in range(1, 8)]

    with tempfile.TemporaryDirectory() as tmp:
        cli = []
        for i in range(3):
            start = time.perf_counter()
            proc = subprocess.run([sys.executable, "-m", "desktop_app", "generate", "a red apple", "--seed",
                                   str(i), "--out", str(Path(tmp) / f"apple{i}.png")], capture_output=True,
                                  text=True)
            cli.append(time.perf_counter() - start)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
    figures = {
        "import_engine_s": round(import_s, 2),
        "load_s": round(load_s, 2),
        "image_plus_upscale_median_s": round(statistics.median(per_image), 3),
        "image_plus_upscale_spread_s": [round(min(per_image), 3), round(max(per_image), 3)],
        "cli_end_to_end_median_s": round(statistics.median(cli), 2),
        "device": engine.describe_device(),
    }
    print(json.dumps(figures, indent=1))
    print(f"bars: image+upscale <= 1.5 s: {figures['image_plus_upscale_median_s'] <= 1.5}; "
          f"load <= 3 s: {load_s <= 3}; CLI end to end <= 8 s: {figures['cli_end_to_end_median_s'] <= 8}")


if __name__ == "__main__":
    main()

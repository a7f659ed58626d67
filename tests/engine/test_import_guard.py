"""Importing the engine runs without garbage-collector pauses, and leaves the collector on and cheap."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_collector_is_on_after_the_engine_imports_and_skips_what_they_made():
    code = ("import gc, time\n"
            "runs = []\n"
            "gc.callbacks.append(lambda phase, info: runs.append(info['generation']) if phase == 'stop' else 0)\n"
            "from desktop_app.engine import generate\n"
            "start = time.perf_counter(); gc.collect(); full = time.perf_counter() - start\n"
            "print(gc.isenabled(), gc.get_freeze_count() > 100_000, runs.count(2), full)\n")
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    enabled, frozen, oldest_runs, _ = proc.stdout.split()
    # on, with the imports frozen, and no full collection while they ran (the one counted is gc.collect())
    assert (enabled, frozen, oldest_runs) == ("True", "True", "1")

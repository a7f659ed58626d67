"""Section 4, start-up: process start to window shown, and process start to the first finished image.

Both are child processes timed from just before they start (so the interpreter's own start counts):
- ``python -m desktop_app`` with DESKTOP_APP_EXIT_AFTER_SHOW=1 (and the offscreen Qt platform), which prints
  the clock once the window is shown and quits;
- ``python -m desktop_app generate PROMPT --out FILE`` with the model's defaults (the 4x upscale included
  where the model has one): until the PNG is written and the process has ended.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from desktop_app.bench.common import Settings, child_env, last_line, median_of, run_child, spread

TARGET_WINDOW_S = 2.0
TARGET_FIRST_IMAGE_S = 8.0
# as in desktop_app/gui/app.py (EXIT_AFTER_SHOW, SHOWN_MARK), repeated so that the bench loads no Qt
EXIT_AFTER_SHOW = "DESKTOP_APP_EXIT_AFTER_SHOW"
SHOWN_MARK = "window shown at "
KEYS = ("window_shown_s", "window_process_s", "first_image_s", "first_image_stages_s", "import_profile_s",
        "target_window_s", "target_first_image_s", "meets_target")
# where the first image's time outside the engine goes: these modules' import times (cumulative, as
# ``python -X importtime`` reports them), from one more ``desktop-app generate`` run
WATCHED_IMPORTS = ("torch", "torch._dynamo", "diffusers", "transformers", "scipy.stats", "spandrel", "PIL.Image",
                   "desktop_app.engine.generate", "desktop_app.engine.loader")


def run(settings: Settings) -> dict:
    shown, process = [], []
    for _ in range(settings.process_runs):
        child = run_child(["-m", "desktop_app", "--model", settings.model, "--device", settings.device],
                          env=child_env(QT_QPA_PLATFORM="offscreen", **{EXIT_AFTER_SHOW: "1"}),
                          timeout=120)
        marks = [line for line in child.stdout.splitlines() if line.startswith(SHOWN_MARK)]
        if child.returncode != 0 or not marks:
            raise RuntimeError(f"the window did not report being shown (exit {child.returncode}): "
                               f"{last_line(child.stderr)}")
        shown.append(float(marks[-1][len(SHOWN_MARK):]) - child.started)
        process.append(child.seconds)

    first, stages, peaks = [], {}, []
    with tempfile.TemporaryDirectory() as folder:
        for index in range(settings.process_runs):
            out = Path(folder) / f"first-{index}.png"
            child = run_child(["-m", "desktop_app", "generate", settings.prompt, "--out", str(out), "--model",
                               settings.model, "--device", settings.device, "--seed", str(settings.seed + index),
                               "--json"], timeout=300)
            if child.returncode != 0 or not out.is_file():
                raise RuntimeError(f"desktop-app generate failed (exit {child.returncode}): "
                                   f"{last_line(child.stderr)}")
            first.append(child.seconds)
            peaks.append(child.peak_rss_mb)
            timings = json.loads(child.stdout.strip().splitlines()[-1]).get("timings", {})
            for name, value in timings.items():
                stages.setdefault(name, []).append(value)
            # what the process spent outside the engine's run: the interpreter, imports, writing the PNG
            stages.setdefault("outside_run", []).append(child.seconds - timings.get("total", 0.0))
        imports = ("not run in --quick" if settings.quick
                   else import_profile(settings, Path(folder) / "imports.png"))
    settings.shared["generate_peak_rss_mb"] = peaks
    window, image = spread(shown, 3), spread(first, 3)
    return {
        "window_shown_s": window, "window_process_s": spread(process, 3), "first_image_s": image,
        "first_image_stages_s": {name: spread(values, 3) for name, values in stages.items()},
        "import_profile_s": imports,
        "target_window_s": TARGET_WINDOW_S, "target_first_image_s": TARGET_FIRST_IMAGE_S,
        "meets_target": {"window": median_of(window) < TARGET_WINDOW_S,
                         "first_image": median_of(image) < TARGET_FIRST_IMAGE_S},
    }


def import_profile(settings: Settings, out: Path) -> dict:
    """Seconds spent importing the watched modules (the first import of each, nested imports included), and
    all imports together, in one ``python -X importtime -m desktop_app generate`` run."""
    child = run_child(["-X", "importtime", "-m", "desktop_app", "generate", settings.prompt, "--out", str(out),
                       "--model", settings.model, "--device", settings.device], timeout=300)
    found, total = {}, 0
    for line in child.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        _, cumulative, name = line.split("|", 2)
        try:
            micros = int(cumulative.strip())
        except ValueError:  # the header line
            continue
        if not name.startswith("  "):  # a top-level import: its cumulative time counts once in the total
            total += micros
        if name.strip() in WATCHED_IMPORTS:
            found[name.strip()] = round(micros / 1e6, 3)
    return {"all_imports": round(total / 1e6, 3), **found}

"""Section 3, window responsiveness: the longest stall of the Qt event loop in the real window, offscreen.

A child process (``python -m desktop_app.bench.responsiveness --child``) opens the real MainWindow with
QT_QPA_PLATFORM=offscreen, starts a 5 ms QTimer probe on the UI thread, and records the gaps between its
ticks while: the window idles; the worker warms up (imports torch and creates the engine, as the window does
after it is shown); the first generation runs (it loads the model); then further generations run. A gap much
longer than 5 ms is a time the window could not repaint or answer a click. Last, a short LoRA training runs
from the window's Fine-tune panel (a separate process; the window reads its events and draws the loss curve and
samples). The target (under 50 ms) is for the generations and the training; the warm-up and first run are
reported beside them because people meet them too. The child runs on a temporary user folder.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from desktop_app.bench.common import NOT_AVAILABLE, Settings, child_env, last_line, run_child, spread

TARGET_MS = 50.0
PROBE_MS = 5
KEYS = ("generation", "warm_up", "first_run", "idle", "target_ms", "meets_target", "window_peak_rss_mb",
        "training")
MARK = "RESPONSIVENESS "


def run(settings: Settings) -> dict:
    from desktop_app.paths import temporary_home

    runs = 2 if settings.quick else 5
    training_steps = 10 if settings.quick else 40
    with temporary_home("desktop-app-bench-") as home:  # the window's settings, history and the probe's LoRA
        child = run_child(["-m", "desktop_app.bench.responsiveness", "--child", "--model", settings.model,
                           "--device", settings.device, "--runs", str(runs), "--prompt", settings.prompt,
                           "--training-steps", str(training_steps)],
                          env=child_env(QT_QPA_PLATFORM="offscreen", DESKTOP_APP_HOME=str(home)), timeout=900)
    lines = [line for line in child.stdout.splitlines() if line.startswith(MARK)]
    if child.returncode != 0 or not lines:
        raise RuntimeError(f"the window probe failed (exit {child.returncode}): "
                           f"{last_line(child.stderr) or last_line(child.stdout)}")
    phases = json.loads(lines[-1][len(MARK):])
    settings.shared["window_peak_rss_mb"] = child.peak_rss_mb
    generation = phases.get("generation") or {}
    training = phases.get("training") or {}
    worst = max((g for g in (generation.get("max_gap_ms"), training.get("max_gap_ms")) if g is not None),
                default=None)
    return {
        "generation": generation, "warm_up": phases.get("warm_up"), "first_run": phases.get("first_run"),
        "idle": phases.get("idle"), "target_ms": TARGET_MS,
        "meets_target": None if worst is None else worst < TARGET_MS,
        "window_peak_rss_mb": child.peak_rss_mb,
        "training": training or f"{NOT_AVAILABLE}: the training phase did not run",
    }


# ---- the child: the real window, offscreen --------------------------------------------------------------


class _Probe:
    """Ticks every PROBE_MS on the UI thread; keeps the gaps between ticks for the phase in progress."""

    def __init__(self):
        from PySide6.QtCore import Qt, QTimer

        self.gaps: list[float] = []
        self.last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(PROBE_MS)
        self.timer.timeout.connect(self._tick)
        self.timer.start()

    def _tick(self) -> None:
        now = time.perf_counter()
        self.gaps.append((now - self.last) * 1000)
        self.last = now

    def phase(self) -> None:
        self.gaps = []
        self.last = time.perf_counter()

    def summary(self, seconds: float, **extra) -> dict:
        gaps = sorted(self.gaps)
        result = {"max_gap_ms": round(gaps[-1], 1) if gaps else None,
                  "p99_gap_ms": round(gaps[int(0.99 * (len(gaps) - 1))], 1) if gaps else None,
                  "median_gap_ms": round(gaps[len(gaps) // 2], 2) if gaps else None,
                  "ticks": len(gaps), "seconds": round(seconds, 3)}
        result.update(extra)
        return result


def _wait(signal, timeout_s: float):
    """Run the event loop until ``signal`` fires (returns its arguments) or the time is up (None)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    got: list = []

    def done(*args):
        got.append(args)
        loop.quit()

    signal.connect(done)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    signal.disconnect(done)
    return got[0] if got else None


def _idle(seconds: float) -> None:
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()


def _train_in_the_panel(window, steps: int) -> str:
    """A short LoRA training from the Fine-tune panel of the real window (its own process, events read by the
    window, loss curve and samples drawn as they come) on five generated images; the final panel state."""
    import tempfile

    from PIL import Image, ImageDraw

    folder = Path(tempfile.mkdtemp(prefix="desktop-app-bench-images-"))
    for index in range(5):
        image = Image.new("RGB", (96, 96), "white")
        ImageDraw.Draw(image).ellipse((12 + index * 3, 12, 84, 84 - index * 3), fill=(200, 40 + 30 * index, 40))
        image.save(folder / f"ball{index}.png")
    panel = window.training_dock.widget()
    panel.set_folder(str(folder))
    panel.token_edit.setText("sks")
    panel.class_edit.setText("ball")
    panel.name_edit.setText("bench-probe")
    panel.steps.setValue(steps)
    panel.advanced.setChecked(True)
    panel.sample_every.setValue(max(1, steps // 2))
    panel.sample_steps.setValue(10)
    panel.checkpoint_every.setValue(max(1, steps // 2))
    if not panel.start():
        return f"did not start: {panel.status.text()}"
    deadline = time.perf_counter() + 600
    while panel.state not in ("finished", "failed", "cancelled") and time.perf_counter() < deadline:
        _idle(0.1)
    while panel.is_running() and time.perf_counter() < deadline:
        _idle(0.1)
    return panel.state


def child_main(args: argparse.Namespace) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from desktop_app.gui.app import application
    from desktop_app.gui.main_window import MainWindow

    app = application()
    window = MainWindow(model=args.model, device=args.device)
    window.show()
    app.processEvents()
    probe = _Probe()
    phases: dict = {}

    probe.phase()
    start = time.perf_counter()
    _idle(0.5)
    phases["idle"] = probe.summary(time.perf_counter() - start)

    probe.phase()
    start = time.perf_counter()
    window.warm_up()
    warmed = _wait(window.worker.warmed, 300)
    phases["warm_up"] = probe.summary(time.perf_counter() - start, ok=bool(warmed and warmed[0]))

    window.form.prompt_edit.setPlainText(args.prompt)
    window.form.random_check.setChecked(False)
    seconds, gaps, outcomes = [], [], []
    for index in range(args.runs + 1):
        probe.phase()
        start = time.perf_counter()
        window.generate()
        ended = _wait(window.run_ended, 600)
        outcome = ended[0] if ended else "timed out"
        elapsed = time.perf_counter() - start
        if index == 0:
            phases["first_run"] = probe.summary(elapsed, outcome=outcome)
        else:
            seconds.append(elapsed)
            gaps.extend(probe.gaps)
            outcomes.append(outcome)
        if outcome != "finished":
            message = window.message_area.text.text()
            phases["error"] = f"run {index}: {outcome}: {message}"
            break
    probe.gaps = gaps
    phases["generation"] = probe.summary(sum(seconds), runs=len(seconds), run_s=spread(seconds),
                                         outcomes=sorted(set(outcomes)))
    if args.training_steps and "error" not in phases:
        probe.phase()
        start = time.perf_counter()
        state = _train_in_the_panel(window, args.training_steps)
        phases["training"] = probe.summary(time.perf_counter() - start, steps=args.training_steps, outcome=state)
    probe.timer.stop()
    window.close()
    app.processEvents()
    print(MARK + json.dumps(phases), flush=True)
    return 0 if "error" not in phases else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m desktop_app.bench.responsiveness")
    parser.add_argument("--child", action="store_true", help="be the probed window (the parent runs this)")
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prompt", default="a red apple")
    parser.add_argument("--training-steps", type=int, default=0,
                        help="then probe a LoRA training of this many steps from the Fine-tune panel (0: none)")
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args)
    print(json.dumps(run(Settings(model=args.model, device=args.device)), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

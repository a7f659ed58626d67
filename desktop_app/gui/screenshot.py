"""A screenshot of the window in the middle of a generation, for the docs and for bug reports.

    xvfb-run -s "-screen 0 1280x860x24" python -m desktop_app.gui.screenshot docs/screenshot-window.png

Options: --model (default: the embedded model), --prompt, --steps, --at (the step to capture), --batch,
--size, --final PATH (also capture the finished result). Exit status 0 when the mid-run capture was taken.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent, QTimer

from desktop_app.gui import app as gui_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m desktop_app.gui.screenshot")
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="default")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--prompt", default="a smiling cat face")
    parser.add_argument("--negative", default="blurry")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--at", type=int, default=None, help="step to capture (default: about 40%%)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--size", type=int, default=None, help="width and height in pixels")
    parser.add_argument("--final", type=Path, default=None, help="also capture the finished result here")
    args = parser.parse_args(argv)
    at = args.at or max(1, round(args.steps * 0.4))

    qt = gui_app.application()
    window = gui_app.MainWindow(model=args.model, device=args.device)
    window.show()
    form = window.form
    form.prompt_edit.setPlainText(args.prompt)
    form.negative_edit.setPlainText(args.negative)
    form.steps_spin.setValue(args.steps)
    form.batch_spin.setValue(args.batch)
    if args.size:
        form.width_spin.setValue(args.size)
        form.height_spin.setValue(args.size)
    captured = {"mid": False, "status": 1}

    def capture(path: Path) -> None:
        # apply pending layout changes (a label that just got longer) without running queued progress events
        QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
        path.parent.mkdir(parents=True, exist_ok=True)
        window.grab().save(str(path))
        print(f"wrote {path} ({window.step_label.text()})", flush=True)

    def on_frame(step: int, total: int) -> None:
        if step >= at and not captured["mid"]:
            captured["mid"] = True
            captured["status"] = 0
            capture(args.out)

    def on_end(how: str) -> None:
        print(f"run {how}: {window.statusBar().currentMessage()}", flush=True)

        def last() -> None:
            if not captured["mid"]:  # failed or too few steps: show what the person saw
                capture(args.out)
            if args.final:
                capture(args.final)
            window.close()

        QTimer.singleShot(300, last)

    window.frame_shown.connect(on_frame)
    window.run_ended.connect(on_end)
    QTimer.singleShot(200, window.warm_up)
    QTimer.singleShot(600, window.generate)
    QTimer.singleShot(600_000, window.close)
    qt.exec()
    return captured["status"]


if __name__ == "__main__":
    sys.exit(main())

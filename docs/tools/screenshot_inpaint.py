"""Screenshots of inpainting in the window, for the docs (issue 17): a face drawn by the embedded model is made
the start image, its mouth is painted over with the mouse, and "heart eyes" repaints it.

    QT_QPA_PLATFORM=offscreen .venv/bin/python docs/tools/screenshot_inpaint.py docs/screenshot-inpaint.png \
        --tools docs/screenshot-mask-tools.png --final docs/screenshot-inpaint-result.png

The first capture shows the start image with the painted mask over it and the mask tools above the canvas;
``--tools`` a close-up of the start-image box and the tools; ``--final`` the inpainted result. Exit status 0
when every run finished.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEvent, QEventLoop, QPoint, Qt, QTimer
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtTest import QTest

from desktop_app.gui import app as gui_app

# a zigzag over the face's mouth (the 64x64 picture's pixels)
MOUTH = [(18, 39), (46, 39), (46, 44), (18, 44), (18, 49), (46, 49), (46, 52), (18, 52)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="docs/tools/screenshot_inpaint.py")
    parser.add_argument("out", type=Path)
    parser.add_argument("--tools", type=Path, default=None)
    parser.add_argument("--final", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)

    gui_app.application()
    window = gui_app.MainWindow(model="default", device=args.device)
    window.resize(1280, 860)
    window.show()
    form = window.form
    form.upscale_check.setChecked(False)  # the mask is painted on the 64x64 picture itself
    form.random_check.setChecked(False)
    form.steps_spin.setValue(12)
    form.guidance_spin.setValue(10.0)

    # 1. the face
    form.prompt_edit.setPlainText("grinning face")
    form.seed_spin.setValue(1)
    if run(window) != "finished":
        return 1
    # 2. made the start image, its mouth painted over
    window.start_image.use_canvas_image()
    box = form.start_box
    box.strength_spin.setValue(0.9)
    box.mask_blur_spin.setValue(4)
    form.prompt_edit.setPlainText("heart eyes")
    form.seed_spin.setValue(3)
    box.paint_button.click()
    window.start_image.tools.size_spin.setValue(6)
    canvas = window.canvas
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, pos=_at(canvas, *MOUTH[0]))
    for point in MOUTH[1:]:
        QTest.mouseMove(canvas, _at(canvas, *point))
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=_at(canvas, *MOUTH[-1]))
    QTest.mouseMove(canvas, _at(canvas, 50, 24))  # the brush's outline, away from the mask
    capture(window, args.out)
    if args.tools:
        stack(box.grab().toImage(), window.start_image.tools.grab().toImage()).save(str(args.tools))
        print(f"wrote {args.tools}", flush=True)
    # 3. repainted
    how = run(window)
    if args.final:
        capture(window, args.final)
    window.close()
    return 0 if how == "finished" else 1


def run(window) -> str:
    """Generate and wait for the run to end; how it ended."""
    ended = {}
    loop = QEventLoop()

    def on_end(how: str) -> None:
        ended["how"] = how
        print(f"run {how}: {window.statusBar().currentMessage()}", flush=True)
        QTimer.singleShot(200, loop.quit)

    window.run_ended.connect(on_end)
    QTimer.singleShot(100, window.generate)
    QTimer.singleShot(600_000, loop.quit)
    loop.exec()
    window.run_ended.disconnect(on_end)
    return ended.get("how", "timed out")


def capture(window, path: Path) -> None:
    QCoreApplication.sendPostedEvents(None, QEvent.Type.LayoutRequest)
    QCoreApplication.processEvents()
    path.parent.mkdir(parents=True, exist_ok=True)
    window.grab().save(str(path))
    print(f"wrote {path}", flush=True)


def stack(top: QImage, bottom: QImage) -> QImage:
    gap = 8
    out = QImage(max(top.width(), bottom.width()), top.height() + gap + bottom.height(),
                 QImage.Format.Format_ARGB32)
    out.fill(QColor("#1f2126"))
    painter = QPainter(out)
    painter.drawImage(0, 0, top)
    painter.drawImage(0, top.height() + gap, bottom)
    painter.end()
    return out


def _at(canvas, x: float, y: float) -> QPoint:
    rect, image = canvas.target_rect(), canvas.image()
    return QPoint(round(rect.x() + (x + 0.5) * rect.width() / image.width()),
                  round(rect.y() + (y + 0.5) * rect.height() / image.height()))


if __name__ == "__main__":
    sys.exit(main())

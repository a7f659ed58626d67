"""Start the window: ``desktop-app`` (no arguments) or ``python -m desktop_app.gui.app``.

The window shows before torch is imported; the worker loads the engine in its own thread afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys

from PySide6.QtCore import QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

import desktop_app

from .about_dialog import APP_NAME
from .main_window import MainWindow


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="desktop-app", description=f"{APP_NAME}: text to image, offline.")
    parser.add_argument("--model", default=None,
                        help='"default" (the embedded model) or a diffusers model folder')
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--no-warm-up", action="store_true",
                        help="load the engine at the first run, not at start")
    return parser.parse_args(argv)


def application(argv: list[str] | None = None) -> QApplication:
    """The running QApplication, created and styled if there is none yet."""
    app = QApplication.instance()
    if app is None:
        app = QApplication([sys.argv[0] if sys.argv else APP_NAME] + list(argv or []))
        app.setApplicationName(APP_NAME)
        app.setApplicationVersion(desktop_app.__version__)
        app.setOrganizationName("desktop-app")
        apply_style(app)
    return app


def apply_style(app: QApplication) -> None:
    """Fusion with a calm dark palette: the same look on every platform, and images read well on dark."""
    app.setStyle("Fusion")
    palette = QPalette()
    colours = {
        QPalette.ColorRole.Window: "#2b2d31",
        QPalette.ColorRole.WindowText: "#e3e5e8",
        QPalette.ColorRole.Base: "#1f2126",
        QPalette.ColorRole.AlternateBase: "#2f3238",
        QPalette.ColorRole.ToolTipBase: "#3a3d44",
        QPalette.ColorRole.ToolTipText: "#e3e5e8",
        QPalette.ColorRole.Text: "#e3e5e8",
        QPalette.ColorRole.Button: "#35383e",
        QPalette.ColorRole.ButtonText: "#e3e5e8",
        QPalette.ColorRole.BrightText: "#ffffff",
        QPalette.ColorRole.Highlight: "#2f6fde",
        QPalette.ColorRole.HighlightedText: "#ffffff",
        QPalette.ColorRole.Link: "#6ea2ff",
        QPalette.ColorRole.PlaceholderText: "#7c818a",
    }
    for role, colour in colours.items():
        palette.setColor(role, QColor(colour))
    for role in (QPalette.ColorRole.WindowText, QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText):
        palette.setColor(QPalette.ColorGroup.Disabled, role, QColor("#6b7079"))
    app.setPalette(palette)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    app = application()
    window = MainWindow(model=args.model, device=args.device)
    window.show()
    if not args.no_warm_up:
        # after the first paint: importing torch takes seconds, and happens in the worker thread
        QTimer.singleShot(300, window.warm_up)
    return app.exec()


def selftest_window() -> tuple[bool, str]:
    """Open the window offscreen, let it paint, close it; check that no worker thread is left running."""
    from .workers import live_threads

    try:
        if QApplication.instance() is None:
            os.environ["QT_QPA_PLATFORM"] = "offscreen"  # no screen needed, nothing flashes on one
        app = application()
        window = MainWindow()
        window.show()
        app.processEvents()
        visible = window.isVisible()
        size = window.size()
        window.close()
        app.processEvents()
        window.deleteLater()
        app.processEvents()
    except Exception as exc:  # noqa: BLE001 - the self-test reports, it does not crash
        return False, f"the window could not be opened: {type(exc).__name__}: {exc}"
    if not visible:
        return False, "the window did not become visible"
    if live_threads():
        return False, "a worker thread was still running after the window closed"
    return True, f"window opened and closed ({app.platformName()}, {size.width()}x{size.height()})"


if __name__ == "__main__":
    sys.exit(main())

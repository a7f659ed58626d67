"""Start the window: ``desktop-app`` (no arguments) or ``python -m desktop_app.gui.app``.

The window shows before torch is imported; the worker loads the engine in its own thread afterwards.
"""

from __future__ import annotations

import argparse
import os
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

import desktop_app

from desktop_app.gui.about_dialog import APP_NAME
from desktop_app.gui.main_window import MainWindow


# the start-up benchmark (desktop_app/bench/startup.py) sets this to 1: print SHOWN_MARK and the time once the
# window is shown, then quit
EXIT_AFTER_SHOW = "DESKTOP_APP_EXIT_AFTER_SHOW"
SHOWN_MARK = "window shown at "


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


def apply_style(app: QApplication, choice: str = "system") -> None:
    """Fusion, following the system's light or dark scheme unless the settings choose one (gui/theme.py)."""
    from desktop_app.gui.theme import apply_theme

    apply_theme(app, choice)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    app = application()
    window = MainWindow(model=args.model, device=args.device)
    window.show()
    if os.environ.get(EXIT_AFTER_SHOW) == "1":
        # the start-up benchmark: once the event loop has handled the show (first paint), print the clock
        # and quit
        QTimer.singleShot(0, lambda: _report_shown(app))
    elif not args.no_warm_up:
        # after the first paint: importing torch takes seconds, and happens in the worker thread
        QTimer.singleShot(300, window.warm_up)
    return app.exec()


def _report_shown(app: QApplication) -> None:
    import time

    print(f"{SHOWN_MARK}{time.time():.6f}", flush=True)
    app.quit()


def selftest_window() -> tuple[bool, str]:
    """Open the window offscreen, let it paint, close it; check that no worker thread is left running."""
    from desktop_app.gui.workers import live_threads

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

"""``desktop-app`` with no command: the window (after checking that it can start here)."""

from __future__ import annotations

import os
import sys

from desktop_app.cli.errors import EXIT_BAD_INPUT, EXIT_FAILED, PROG


def display_available() -> bool:
    """False on Linux with no X11/Wayland display and no Qt platform chosen (a server, a container, ssh)."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


def open_window(argv: list[str]) -> int:
    if not display_available():
        print(f"{PROG}: no display to open the window on (DISPLAY and WAYLAND_DISPLAY are not set).\n"
              f'Generate from the command line instead:  {PROG} generate "a prompt" --out image.png\n'
              f"or run the window without a screen:  QT_QPA_PLATFORM=offscreen {PROG}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from desktop_app.gui import system_libraries

    missing = system_libraries.problem()
    if missing:  # Qt would abort with its generic plugin message and a core dump
        print(f"{PROG}: {missing}", file=sys.stderr)
        return EXIT_FAILED
    try:
        from desktop_app.gui import app
    except ImportError as exc:
        print(f"{PROG}: the window cannot start: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return int(app.main(argv) or 0)

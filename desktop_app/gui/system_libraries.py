"""Before the window starts on Linux: are the X11 (xcb) libraries that Qt 6.5+ needs installed?

Without them Qt aborts with a generic "could not load the Qt platform plugin xcb" message and a core dump. Here
the same check is made first, by loading each library the way Qt would, and one line names the Debian/Ubuntu
packages to install. Plain Python (ctypes): importing this module loads no Qt.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable

# the shared libraries Qt's xcb platform plugin (libqxcb.so, libQt6XcbQpa) loads, and the Debian package of each
XCB_LIBRARIES = {
    "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1",
    "libxkbcommon.so.0": "libxkbcommon0",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0",
    "libxcb-cursor.so.0": "libxcb-cursor0",
    "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-image.so.0": "libxcb-image0",
    "libxcb-keysyms.so.1": "libxcb-keysyms1",
    "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-render-util.so.0": "libxcb-render-util0",
    "libxcb-shape.so.0": "libxcb-shape0",
    "libxcb-xkb.so.1": "libxcb-xkb1",
    "libEGL.so.1": "libegl1",
    "libfontconfig.so.1": "libfontconfig1",
}


def _loads(soname: str) -> bool:
    try:
        ctypes.CDLL(soname)
    except OSError:
        return False
    return True


def uses_xcb(environ=None, platform: str | None = None) -> bool:
    """True when Qt would start on X11: Linux, and QT_QPA_PLATFORM says xcb, or says nothing on an X11 display
    (a Wayland session with WAYLAND_DISPLAY set uses Qt's Wayland plugin)."""
    environ = os.environ if environ is None else environ
    if not (platform or sys.platform).startswith("linux"):
        return False
    chosen = environ.get("QT_QPA_PLATFORM", "").strip()
    if chosen:
        return chosen.split(";")[0].split(":")[0] == "xcb"
    return bool(environ.get("DISPLAY")) and not environ.get("WAYLAND_DISPLAY")


def missing_packages(load: Callable[[str], bool] | None = None) -> list[str]:
    """The Debian packages whose libraries cannot be loaded, in a stable order (empty when all are there)."""
    load = load or _loads
    return sorted({package for soname, package in XCB_LIBRARIES.items() if not load(soname)})


def problem(environ=None, load: Callable[[str], bool] | None = None) -> str | None:
    """One line for the user when the window cannot start on X11 for lack of libraries, else None."""
    if not uses_xcb(os.environ if environ is None else environ):
        return None
    missing = missing_packages(load)
    if not missing:
        return None
    return (f"the window needs system libraries that are not installed: {', '.join(missing)} "
            f"(Debian/Ubuntu: sudo apt install {' '.join(missing)}; other systems: the packages with the same "
            "xcb libraries)")

"""The window's start-up check on Linux: missing xcb libraries are named in one line, before Qt aborts."""

from __future__ import annotations

import pytest

from desktop_app import cli
from desktop_app.gui import system_libraries


def test_xcb_is_used_on_x11_only():
    assert system_libraries.uses_xcb({"DISPLAY": ":0"}, "linux")
    assert system_libraries.uses_xcb({"QT_QPA_PLATFORM": "xcb"}, "linux")
    assert not system_libraries.uses_xcb({"DISPLAY": ":0", "WAYLAND_DISPLAY": "wayland-0"}, "linux")
    assert not system_libraries.uses_xcb({"DISPLAY": ":0", "QT_QPA_PLATFORM": "offscreen"}, "linux")
    assert not system_libraries.uses_xcb({"DISPLAY": ":0"}, "darwin")


def test_missing_libraries_are_named_with_their_packages():
    gone = {"libxcb-cursor.so.0", "libxcb-icccm.so.4"}
    line = system_libraries.problem({"DISPLAY": ":0"}, load=lambda soname: soname not in gone)
    assert "libxcb-cursor0" in line and "libxcb-icccm4" in line and "apt install" in line
    assert "\n" not in line
    assert system_libraries.problem({"DISPLAY": ":0"}, load=lambda soname: True) is None
    assert system_libraries.problem({"QT_QPA_PLATFORM": "offscreen"}, load=lambda soname: False) is None


def test_the_command_line_stops_with_one_line_instead_of_a_qt_abort(monkeypatch, capsys):
    if not system_libraries.sys.platform.startswith("linux"):
        pytest.skip("the xcb check is for Linux")
    monkeypatch.delenv("QT_QPA_PLATFORM", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setenv("DISPLAY", ":99")
    monkeypatch.setattr(system_libraries, "_loads", lambda soname: soname != "libxcb-keysyms.so.1")
    assert cli.main([]) == cli.EXIT_FAILED
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "libxcb-keysyms1" in lines[0], lines


def test_the_deb_declares_every_library_the_check_needs():
    import importlib.util
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "packaging" / "build_linux.py"
    spec = importlib.util.spec_from_file_location("build_linux_for_test", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    for package in system_libraries.XCB_LIBRARIES.values():
        assert package in module.DEB_DEPENDS

"""Light, dark, or the system's choice. Fusion everywhere, so the window looks the same on every platform.

"system" follows the desktop's colour scheme (Qt 6.5+ reports it, and tells us when it changes). The image
area (canvas, stage strip, progress) keeps its own dark colours in every theme on purpose: images read best on
a dark neutral surround, and its text colours are set with it, so nothing there depends on the palette.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication

THEMES = ("system", "dark", "light")
_current = {"choice": "system", "connected": False}


def dark_palette() -> QPalette:
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
    return palette


def system_is_dark() -> bool:
    hints = QGuiApplication.styleHints()
    scheme = getattr(hints, "colorScheme", None)
    if scheme is None:  # Qt < 6.5: guess from the default palette
        return QApplication.palette().color(QPalette.ColorRole.Window).lightness() < 128
    return scheme() == Qt.ColorScheme.Dark


def effective(choice: str) -> str:
    """"dark" or "light": what ``choice`` means right now."""
    if choice == "system":
        return "dark" if system_is_dark() else "light"
    return choice if choice in THEMES else "dark"


def apply_theme(app: QApplication, choice: str = "system") -> str:
    """Style the application; returns the effective theme ("dark" or "light")."""
    choice = choice if choice in THEMES else "system"
    _current["choice"] = choice
    app.setStyle("Fusion")
    mode = effective(choice)
    app.setPalette(dark_palette() if mode == "dark" else app.style().standardPalette())
    hints = QGuiApplication.styleHints()
    if not _current["connected"] and hasattr(hints, "colorSchemeChanged"):
        hints.colorSchemeChanged.connect(lambda *_: _follow_system(app))
        _current["connected"] = True
    return mode


def current_choice() -> str:
    return _current["choice"]


def _follow_system(app: QApplication) -> None:
    if _current["choice"] == "system":
        apply_theme(app, "system")

"""Push buttons as the panels make them: a label, a tooltip that says what happens, the slot it runs."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtWidgets import QPushButton


def action_button(text: str, tooltip: str, slot: Callable) -> QPushButton:
    button = QPushButton(text)
    button.setToolTip(tooltip)
    button.clicked.connect(slot)
    return button

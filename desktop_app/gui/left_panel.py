"""The window's left side: the generation form (scrolled), the queue, and the Generate and Cancel buttons."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QScrollArea, QVBoxLayout, QWidget

from desktop_app.gui.generation_form import GenerationForm
from desktop_app.gui.queue_panel import QueuePanel

GENERATE_STYLE = (
    "QPushButton#generate_button { background: #2f6fde; color: white; font-weight: 600;"
    " border: 1px solid #2a63c7; border-radius: 4px; padding: 6px 14px; }"
    "QPushButton#generate_button:hover { background: #3b7cf0; }"
    "QPushButton#generate_button:disabled { background: #5d6b85; color: #c8cdd6; border-color: #5d6b85; }")


class LeftPanel(QWidget):
    """``form``, ``queue_panel``, ``generate_button`` and ``cancel_button``: the window connects them."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("left_panel")
        self.setMinimumWidth(320)
        self.setMaximumWidth(480)
        self.form = GenerationForm()
        scroll = QScrollArea()
        scroll.setWidget(self.form)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.queue_panel = QueuePanel()
        self.generate_button = _button("Generate", "generate_button", "Generate (Ctrl+Enter)")
        self.generate_button.setDefault(True)
        self.generate_button.setStyleSheet(GENERATE_STYLE)
        self.cancel_button = _button("Cancel", "cancel_button", "Cancel (Esc)")
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        hint = QLabel("Ctrl+Enter to generate · Esc to cancel")
        hint.setObjectName("shortcut_hint")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setStyleSheet("color: palette(placeholder-text); font-size: 11px;")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 10, 6, 10)
        layout.addWidget(scroll, 1)
        layout.addWidget(self.queue_panel)
        layout.addLayout(buttons)
        layout.addWidget(hint)

    def set_running(self, running: bool) -> None:
        """While a job runs, Generate adds to the queue and Cancel stops the job."""
        self.generate_button.setText("Add to queue" if running else "Generate")
        self.generate_button.setToolTip("Add to the queue (Ctrl+Enter)" if running else "Generate (Ctrl+Enter)")
        self.cancel_button.setEnabled(running)


def _button(text: str, name: str, tip: str) -> QPushButton:
    button = QPushButton(text)
    button.setObjectName(name)
    button.setToolTip(tip)
    button.setMinimumHeight(36)
    return button

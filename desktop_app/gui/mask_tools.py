"""The mask tools above the canvas while the inpainting mask is painted: brush or eraser, the brush's size, undo,
redo, invert, clear, load a mask file, and Done. They act on a MaskLayer (mask_painter.py); the keys work while
the bar is on screen (B, E, [ and ], Ctrl+Z, Ctrl+Shift+Z)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QButtonGroup, QFrame, QHBoxLayout, QLabel, QSpinBox, QToolButton, QWidget

from desktop_app.gui.mask_painter import MaskLayer

MAX_BRUSH = 512


class MaskTools(QFrame):
    done = Signal()  # the person finished painting
    load_requested = Signal()  # "Load…": choose an image file as the mask

    def __init__(self, layer: MaskLayer, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("mask_tools")
        self.layer = layer
        self.brush_button = self._tool("Brush", "Paint the area to repaint (B; the right button erases)", "B")
        self.eraser_button = self._tool("Eraser", "Erase from the mask (E)", "E")
        self.brush_button.setChecked(True)
        tools = QButtonGroup(self)
        tools.setExclusive(True)
        tools.addButton(self.brush_button)
        tools.addButton(self.eraser_button)
        self.eraser_button.toggled.connect(lambda on: setattr(self.layer, "eraser", on))
        self.size_spin = QSpinBox()
        self.size_spin.setObjectName("brush_size")
        self.size_spin.setRange(1, MAX_BRUSH)
        self.size_spin.setSuffix(" px")
        self.size_spin.setValue(layer.brush)
        self.size_spin.setToolTip("The brush's diameter in pixels of the start image ([ and ] change it)")
        self.size_spin.valueChanged.connect(lambda value: setattr(self.layer, "brush", value))
        keys = QKeySequence.StandardKey
        self.undo_button = self._button("Undo", "Undo the last stroke (Ctrl+Z)", layer.undo, keys.Undo)
        self.redo_button = self._button("Redo", "Redo (Ctrl+Shift+Z)", layer.redo, keys.Redo)
        self.invert_button = self._button("Invert", "Repaint what was kept and keep what was painted",
                                          layer.invert)
        self.clear_button = self._button("Clear", "Remove the whole mask", layer.clear)
        self.load_button = self._button("Load…", "Use an image file as the mask (white = repaint)",
                                        self.load_requested.emit)
        self.done_button = self._button("Done", "Stop painting (the mask is kept and sent with Generate)",
                                        self.done.emit)
        self.coverage_label = QLabel()
        self.coverage_label.setObjectName("mask_coverage")
        for key, step in (("[", -1), ("]", 1)):
            action = QAction(self)
            action.setShortcut(QKeySequence(key))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(lambda _=False, step=step: self.size_spin.setValue(
                max(1, round(self.size_spin.value() * (1.25 if step > 0 else 0.8)) + step)))
            self.addAction(action)
        row = QHBoxLayout(self)
        row.setContentsMargins(8, 4, 8, 4)
        row.addWidget(QLabel("Mask:"))
        for widget in (self.brush_button, self.eraser_button, QLabel("Size"), self.size_spin, self.undo_button,
                       self.redo_button, self.invert_button, self.clear_button, self.load_button):
            row.addWidget(widget)
        row.addWidget(self.coverage_label, 1)
        row.addWidget(self.done_button)
        self.setStyleSheet("QFrame#mask_tools { background: #2a2d33; border: 1px solid #3a3d44;"
                           " border-radius: 6px; } QFrame#mask_tools QLabel { color: #d7dae0; }")
        layer.changed.connect(self.refresh)
        self.refresh()
        self.hide()

    def refresh(self) -> None:
        """Undo and redo follow what the layer can do; the share to repaint is shown."""
        self.undo_button.setEnabled(self.layer.can_undo())
        self.redo_button.setEnabled(self.layer.can_redo())
        self.coverage_label.setText(f"{self.layer.coverage():.0%} to repaint" if self.layer.image() is not None
                                    else "")
        if self.size_spin.value() != self.layer.brush:
            self.size_spin.setValue(self.layer.brush)

    def _tool(self, text: str, tip: str, key: str) -> QToolButton:
        button = QToolButton()
        button.setObjectName(f"mask_{text.lower()}")
        button.setText(text)
        button.setToolTip(tip)
        button.setCheckable(True)
        action = QAction(self)
        action.setShortcut(QKeySequence(key))
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.triggered.connect(lambda _=False: button.setChecked(True))
        self.addAction(action)
        return button

    def _button(self, text: str, tip: str, slot, shortcut=None) -> QToolButton:
        button = QToolButton()
        button.setObjectName(f"mask_{text.rstrip('…').lower()}")
        button.setText(text)
        button.setToolTip(tip)
        button.clicked.connect(lambda _=False: slot())
        if shortcut is not None:
            action = QAction(self)
            action.setShortcut(QKeySequence(shortcut))
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
            action.triggered.connect(lambda _=False: slot() if button.isEnabled() else None)
            self.addAction(action)
        return button

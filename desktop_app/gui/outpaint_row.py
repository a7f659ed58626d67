"""The start image box's Extend row (issue 17, outpainting): how many pixels to add on the left, top, right and
bottom of the start image, and a button that adds 64 on every side. The box (start_image_box.py) grows the form's
size by what is added, and sends the borders as the request's ``outpaint``."""

from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QGridLayout, QPushButton, QSpinBox, QWidget

from desktop_app.engine.request import MAX_OUTPAINT

SIDES = ("left", "top", "right", "bottom")
QUICK = 64  # the button's pixels on every side
EXTEND_TIP = ("Outpainting: add this many pixels on each side of the start image and draw them (the form's size "
              "grows by them); the start image is kept")


class OutpaintRow(QWidget):
    changed = Signal()  # a border changed (by a person or by ``set_value``)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.spins: dict[str, QSpinBox] = {}
        grid = QGridLayout(self)
        grid.setContentsMargins(0, 0, 0, 0)
        for k, side in enumerate(SIDES):
            spin = QSpinBox()
            spin.setObjectName(f"outpaint_{side}")
            spin.setRange(0, MAX_OUTPAINT)
            spin.setSingleStep(8)
            spin.setPrefix(f"{side[0].upper()} ")
            spin.setToolTip(f"{EXTEND_TIP}. {side.capitalize()}: pixels added")
            spin.valueChanged.connect(lambda _value: self.changed.emit())
            self.spins[side] = spin
            grid.addWidget(spin, k % 2, k // 2)  # left and top in the first column, right and bottom beside
        self.quick_button = QPushButton(f"+{QUICK} px each side")
        self.quick_button.setObjectName("outpaint_quick")
        self.quick_button.setToolTip(f"Extend the start image by {QUICK} pixels on every side")
        self.quick_button.clicked.connect(lambda _=False: self.set_value((QUICK,) * 4))
        self.reset_button = QPushButton("None")
        self.reset_button.setObjectName("outpaint_none")
        self.reset_button.setToolTip("Do not extend the start image")
        self.reset_button.clicked.connect(lambda _=False: self.set_value((0,) * 4))
        grid.addWidget(self.quick_button, 2, 0)
        grid.addWidget(self.reset_button, 2, 1)

    def value(self) -> tuple[int, int, int, int]:
        return tuple(self.spins[side].value() for side in SIDES)

    def extending(self) -> bool:
        return any(self.value())

    def set_value(self, borders) -> None:
        """Set the four borders at once: one ``changed``."""
        if tuple(borders) == self.value():
            return
        for side, value in zip(SIDES, borders):
            self.spins[side].blockSignals(True)
            self.spins[side].setValue(int(value))
            self.spins[side].blockSignals(False)
        self.changed.emit()

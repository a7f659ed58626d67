"""The explain view's compare grid (issue 18, section 6): two fields, X and Y, each a setting and its values
(``guidance=3,7,12``, ``steps=10,20``, ``prompt=red,green`` ...), read by ``engine/compare_grid.py`` (torch-free).
Empty X: no grid. A pure view: ``axes()`` gives the parsed axes or raises RequestError naming the field."""

from __future__ import annotations

from PySide6.QtWidgets import QHBoxLayout, QLabel, QLineEdit, QWidget

from desktop_app.engine.compare_grid import AXES, parse_axis
from desktop_app.errors import RequestError

TIP = ("A compare grid in the Guidance section: the request made for every value of X (across) and Y (down), the "
       f"rest kept. Write NAME=V1,V2,... with NAME one of {', '.join(AXES)}; prompt=red,green,blue replaces "
       "'red' in the prompt by each value. Leave X empty for no grid.")


class CompareFields(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("compare_fields")
        self.x_edit, self.y_edit = QLineEdit(), QLineEdit()
        for edit, name, hint in ((self.x_edit, "compare_x", "X: e.g. guidance=3,7,12"),
                                 (self.y_edit, "compare_y", "Y: e.g. steps=10,20 (optional)")):
            edit.setObjectName(name)
            edit.setPlaceholderText(hint)
            edit.setClearButtonEnabled(True)
            edit.setToolTip(TIP)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        label = QLabel("Compare grid:")
        label.setToolTip(TIP)
        layout.addWidget(label)
        layout.addWidget(self.x_edit, 1)
        layout.addWidget(self.y_edit, 1)

    def axes(self):
        """(x, y) compare_grid Axes (y may be None), or None when X is empty; RequestError naming the field."""
        x_text, y_text = self.x_edit.text().strip(), self.y_edit.text().strip()
        if not x_text:
            if y_text:
                raise RequestError("compare grid", "Y gives the rows; fill in X, the columns, too")
            return None
        return parse_axis(x_text, "compare grid X"), parse_axis(y_text, "compare grid Y") if y_text else None

"""Draw… a scribble for a ControlNet (issue 17): white strokes on black at the picture's size, what the scribble
ControlNets read (and a rough edge or line-art map for the others). The person draws with the left button and
erases with the right; brush size, clear, undo and redo; OK writes the drawing as a PNG into the work folder
(``scribble-<hash>.png``, named by its content, so a recipe that names it keeps it: studio/work_cleanup.py) and
the ControlNet row takes it as its image, preprocessor "none".

The pixels live in a ``mask_painter.MaskLayer`` (the inpainting mask's layer: greyscale, strokes, undo): one
implementation of strokes for both. A drawing opened again (the row's image is a scribble) starts from it.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QImage, QPainter
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_app.gui.mask_painter import MaskLayer, work_dir

PREFIX = "scribble"
PAD_SIDE = 384  # the drawing area's longer side on screen, in pixels


class ScribblePad(QWidget):
    """Shows the layer scaled to fit and turns mouse strokes into the layer's strokes, in image pixels."""

    def __init__(self, layer: MaskLayer, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("scribble_pad")
        self.layer = layer
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setCursor(Qt.CursorShape.CrossCursor)
        layer.changed.connect(self.update)

    def sizeHint(self) -> QSize:
        size = self.layer.size() or QSize(64, 64)
        scale = PAD_SIDE / max(size.width(), size.height())
        return QSize(round(size.width() * scale), round(size.height() * scale))

    def image_rect(self) -> QRectF:
        """Where the image is drawn: as large as fits, centred, its aspect kept."""
        size = self.layer.size() or QSize(1, 1)
        scale = min(self.width() / size.width(), self.height() / size.height())
        width, height = size.width() * scale, size.height() * scale
        return QRectF((self.width() - width) / 2, (self.height() - height) / 2, width, height)

    def to_image(self, point) -> QPointF:
        rect, size = self.image_rect(), self.layer.size() or QSize(1, 1)
        return QPointF((point.x() - rect.x()) * size.width() / rect.width(),
                       (point.y() - rect.y()) * size.height() / rect.height())

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.GlobalColor.darkGray)
        image = self.layer.image()
        if image is not None:
            painter.drawImage(self.image_rect(), image)
        painter.end()

    def mousePressEvent(self, event) -> None:
        erase = event.button() == Qt.MouseButton.RightButton
        if event.button() in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            self.layer.begin_stroke(self.to_image(event.position()), erase=erase)

    def mouseMoveEvent(self, event) -> None:
        if event.buttons() & (Qt.MouseButton.LeftButton | Qt.MouseButton.RightButton):
            self.layer.stroke_to(self.to_image(event.position()))

    def mouseReleaseEvent(self, event) -> None:
        self.layer.end_stroke()


class ScribbleDialog(QDialog):
    """``ScribbleDialog(size, start)``: a drawing of ``size`` (width, height), from the image file ``start`` when
    given (scaled to the size). After ``exec()`` accepted, ``path`` is the PNG written (None if it could not be:
    ``problem`` says why in one line)."""

    def __init__(self, size: tuple[int, int], start: str | None = None, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Draw a scribble")
        self.setObjectName("scribble_dialog")
        self.layer = MaskLayer(self)
        self.layer.reset(QSize(*size))
        self.layer.brush = max(2, round(max(size) / 64))
        if start:
            self.layer.load(Path(start))
        self.path: Path | None = None
        self.problem = ""
        self.pad = ScribblePad(self.layer)
        self.brush_spin = QSpinBox()
        self.brush_spin.setObjectName("scribble_brush")
        self.brush_spin.setRange(1, 128)
        self.brush_spin.setValue(self.layer.brush)
        self.brush_spin.setSuffix(" px")
        self.brush_spin.setToolTip("The pen's width, in the picture's pixels")
        self.brush_spin.valueChanged.connect(lambda value: setattr(self.layer, "brush", value))
        self.clear_button = QPushButton("Clear")
        self.undo_button, self.redo_button = QPushButton("Undo"), QPushButton("Redo")
        for button, name, action in ((self.clear_button, "scribble_clear", self.layer.clear),
                                     (self.undo_button, "scribble_undo", self.layer.undo),
                                     (self.redo_button, "scribble_redo", self.layer.redo)):
            button.setObjectName(name)
            button.clicked.connect(action)
        self.layer.changed.connect(self._enable)
        tools = QHBoxLayout()
        tools.addWidget(QLabel("Pen"))
        tools.addWidget(self.brush_spin)
        for button in (self.clear_button, self.undo_button, self.redo_button):
            tools.addWidget(button)
        tools.addStretch(1)
        hint = QLabel("Draw with the left button, erase with the right. White lines on black: what a scribble "
                      "ControlNet follows.")
        hint.setWordWrap(True)
        choices = QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel
        self.buttons = QDialogButtonBox(choices)
        self.buttons.accepted.connect(self._save)
        self.buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addLayout(tools)
        layout.addWidget(self.pad, 1)
        layout.addWidget(hint)
        layout.addWidget(self.buttons)
        self._enable()

    def _enable(self) -> None:
        self.undo_button.setEnabled(self.layer.can_undo())
        self.redo_button.setEnabled(self.layer.can_redo())
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(not self.layer.is_empty())

    def image(self) -> QImage | None:
        return self.layer.image()

    def _save(self) -> None:
        try:
            self.path = self.layer.save(work_dir(), prefix=PREFIX)
        except OSError as exc:
            self.problem = f"The drawing could not be saved in {work_dir()}: {exc.strerror or exc}"
            self.path = None
        self.accept()


def draw_scribble(parent: QWidget, size: tuple[int, int], start: str | None) -> tuple[Path | None, str]:
    """The dialog run modally: (the PNG written or None, a line saying why not or "")."""
    dialog = ScribbleDialog(size, start, parent)
    accepted = dialog.exec() == QDialog.DialogCode.Accepted
    return (dialog.path if accepted else None), dialog.problem


def is_scribble(path: str) -> bool:
    """Whether ``path`` is a drawing this dialog wrote (Draw… then starts from it)."""
    return bool(path) and Path(path).name.startswith(f"{PREFIX}-") and Path(path).parent == work_dir()

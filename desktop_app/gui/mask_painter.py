"""The inpainting mask the person paints over the start image (issue 17): a greyscale image the size of the start
image, white where the model repaints, black where the start image is kept. Brush and eraser strokes, clear,
invert, an image file loaded as the mask; undo and redo keep whole images (a mask is small: 1 MB at 1024²).

No widgets here: the canvas turns mouse strokes into ``begin_stroke``/``stroke_to``/``end_stroke`` in image
pixels, the mask tools call the rest, and ``save`` writes the PNG the request's ``mask`` names.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject, QPointF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPen

UNDO_LIMIT = 50
GREY = QImage.Format.Format_Grayscale8


class MaskLayer(QObject):
    changed = Signal()  # the mask's pixels, or what undo and redo can do, changed

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._image: QImage | None = None
        self._undo: list[QImage] = []
        self._redo: list[QImage] = []
        self._last: QPointF | None = None  # the stroke's last point
        self._erasing = False  # this stroke's mode
        self.brush = 8  # diameter in image pixels
        self.eraser = False  # the tool chosen: strokes erase
        self.loaded_from: Path | None = None  # the file last loaded as the mask, if any

    # ---- the mask ------------------------------------------------------------------------------------

    def reset(self, size: QSize | None) -> None:
        """A new, empty mask of ``size`` (the start image's), or none; undo and redo forget the old one."""
        self._image = None if size is None or size.isEmpty() else _black(size)
        self._undo.clear()
        self._redo.clear()
        self._last = None
        self.loaded_from = None
        self.changed.emit()

    def image(self) -> QImage | None:
        return self._image

    def size(self) -> QSize | None:
        return None if self._image is None else self._image.size()

    def pixels(self):
        """The mask as a height x width numpy array of 0..255 (a copy), or None."""
        if self._image is None:
            return None
        import numpy as np

        rows = np.frombuffer(bytes(self._image.constBits()), np.uint8).reshape(self._image.height(), -1)
        return rows[:, :self._image.width()].copy()

    def coverage(self) -> float:
        """The share of the image marked for repainting (0..1; grey counts in part)."""
        values = self.pixels()
        return 0.0 if values is None else float(values.mean()) / 255

    def is_empty(self) -> bool:
        values = self.pixels()
        return values is None or not values.any()

    # ---- strokes (image pixels) ------------------------------------------------------------------------

    def begin_stroke(self, point: QPointF, erase: bool | None = None) -> None:
        """A press: remembers the mask for undo and paints (or erases) a dot."""
        if self._image is None:
            return
        self._push()
        self._erasing = self.eraser if erase is None else erase
        self._last = QPointF(point)
        self._paint(QPointF(point), QPointF(point))

    def stroke_to(self, point: QPointF) -> None:
        if self._image is None or self._last is None:
            return
        self._paint(self._last, QPointF(point))
        self._last = QPointF(point)

    def end_stroke(self) -> None:
        self._last = None

    def _paint(self, start: QPointF, end: QPointF) -> None:
        painter = QPainter(self._image)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, False)  # white or black: the feather softens
        colour = QColor(0, 0, 0) if self._erasing else QColor(255, 255, 255)
        width = max(1, int(self.brush))
        if width <= 1:
            painter.setPen(QPen(colour, 1))
            painter.drawLine(start.toPoint(), end.toPoint())
        else:
            painter.setPen(QPen(colour, width, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                                Qt.PenJoinStyle.RoundJoin))
            if start == end:  # a click: a round dot (a line of no length draws nothing)
                painter.drawPoint(start)
            else:
                painter.drawLine(start, end)
        painter.end()
        self.changed.emit()

    # ---- whole-mask edits ------------------------------------------------------------------------------

    def clear(self) -> None:
        if self._image is not None and not self.is_empty():
            self._push()
            self._image.fill(0)
            self.changed.emit()

    def invert(self) -> None:
        if self._image is not None:
            self._push()
            self._image.invertPixels()
            self.changed.emit()

    def load(self, path: Path) -> str | None:
        """An image file as the mask (white = repaint; transparent counts as black), scaled to the start image.
        Returns a line naming the problem, or None."""
        if self._image is None:
            return "Set a start image first: the mask marks which part of it to repaint"
        given = QImage(str(path))
        if given.isNull():
            return f"{Path(path).name} cannot be read as an image"
        if given.hasAlphaChannel():  # a painted layer: what is transparent is kept
            flat = QImage(given.size(), QImage.Format.Format_ARGB32)
            flat.fill(QColor(0, 0, 0))
            painter = QPainter(flat)
            painter.drawImage(0, 0, given)
            painter.end()
            given = flat
        grey = given.convertToFormat(GREY)
        if grey.size() != self._image.size():
            grey = grey.scaled(self._image.size(), Qt.AspectRatioMode.IgnoreAspectRatio,
                               Qt.TransformationMode.SmoothTransformation)
        self._push()
        self._image = grey.convertToFormat(GREY)
        self.loaded_from = Path(path)
        self.changed.emit()
        return None

    # ---- undo and redo -----------------------------------------------------------------------------------

    def _push(self) -> None:
        self._undo.append(self._image.copy())
        del self._undo[:-UNDO_LIMIT]
        self._redo.clear()

    def can_undo(self) -> bool:
        return bool(self._undo)

    def can_redo(self) -> bool:
        return bool(self._redo)

    def undo(self) -> None:
        if self._undo:
            self._redo.append(self._image)
            self._image = self._undo.pop()
            self.changed.emit()

    def redo(self) -> None:
        if self._redo:
            self._undo.append(self._image)
            self._image = self._redo.pop()
            self.changed.emit()

    # ---- the file the request names ---------------------------------------------------------------------

    def png_bytes(self) -> bytes:
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        self._image.save(buffer, "PNG")
        return bytes(QByteArray(buffer.data()))

    def save(self, folder: Path, prefix: str = "mask") -> Path:
        """The mask as a greyscale PNG in ``folder``, named ``<prefix>-<hash>.png`` by its content (the same mask
        is one file, and an earlier recipe's mask is never overwritten by later painting). OSError when it cannot
        be written."""
        from desktop_app import paths

        data = self.png_bytes()
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{prefix}-{hashlib.sha256(data).hexdigest()[:16]}.png"
        if not path.is_file():
            paths.write_atomically(path, lambda handle: handle.write(data))
        return path


def _black(size: QSize) -> QImage:
    image = QImage(size, GREY)
    image.fill(0)
    return image


def work_dir() -> Path:
    """Where the window writes the files a request names: ``<user folder>/work`` (paths.work_dir)."""
    from desktop_app import paths

    return paths.work_dir()

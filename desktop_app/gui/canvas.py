"""The image canvas: shows preview frames and final images, scaled to fit.

Small images (the default model draws 64x64) are scaled by a whole number with nearest-neighbour, so each
pixel stays a crisp square the person can see; large images are scaled smoothly.

While the inpainting mask is painted (``start_mask``), the mask shows over the start image as a translucent
layer (mask_overlay.py) and mouse strokes paint it: the left button with the chosen tool, the right one erases.
Showing any other image ends the painting (``mask_ended``).
"""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPalette
from PySide6.QtWidgets import QSizePolicy, QWidget

from desktop_app.gui.images import pil_to_qimage
from desktop_app.gui.mask_overlay import draw_brush, draw_mask

CRISP_MAX_SIDE = 128  # images up to this size are shown with nearest-neighbour, whole-number scaling


class ImageCanvas(QWidget):
    image_changed = Signal()
    mask_ended = Signal()  # another image was shown while the mask was painted: the painting stopped

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._image: QImage | None = None
        self._placeholder = "Type a prompt and press Ctrl+Enter"
        self._caption = ""
        self.frames_shown = 0  # how many images were shown since the last clear()
        self._mask = None  # the MaskLayer painted over the image (mask_painter.py), while painting
        self._cursor: QPointF | None = None  # where the brush's outline is drawn
        self.setObjectName("canvas")
        self.setMinimumSize(256, 256)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAutoFillBackground(True)
        palette = self.palette()
        palette.setColor(QPalette.ColorRole.Window, QColor("#1f2126"))
        self.setPalette(palette)

    # ---- state ---------------------------------------------------------------------------------

    def set_image(self, image, caption: str = "") -> None:
        """Show a PIL image or a QImage."""
        self._end_mask()
        self._show(image, caption)

    def _show(self, image, caption: str) -> None:
        self._image = image if isinstance(image, QImage) else pil_to_qimage(image)
        self._caption = caption
        self.frames_shown += 1
        self.update()
        self.image_changed.emit()

    def clear(self, placeholder: str | None = None) -> None:
        self._end_mask()
        self._image = None
        self._caption = ""
        self.frames_shown = 0
        if placeholder is not None:
            self._placeholder = placeholder
        self.update()
        self.image_changed.emit()

    def image(self) -> QImage | None:
        return self._image

    # ---- painting the inpainting mask ----------------------------------------------------------

    def start_mask(self, image: QImage, layer, caption: str = "") -> None:
        """Show the start image with ``layer`` (a MaskLayer of the same size) over it; strokes paint it."""
        self.stop_mask()  # another layer's painting (no mask_ended: the painting goes on)
        self._show(image, caption)
        self._mask = layer
        layer.changed.connect(self.update)
        self.setMouseTracking(True)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.update()

    def stop_mask(self) -> None:
        """Painting ends; the image stays."""
        if self._mask is None:
            return
        self._mask.changed.disconnect(self.update)
        self._mask.end_stroke()
        self._mask = None
        self._cursor = None
        self.setMouseTracking(False)
        self.unsetCursor()
        self.update()

    def painting(self) -> bool:
        return self._mask is not None

    def _end_mask(self) -> None:
        if self._mask is not None:
            self.stop_mask()
            self.mask_ended.emit()

    def image_point(self, position) -> QPointF:
        """A widget position in the shown image's pixels."""
        rect = self.target_rect()
        if rect.isEmpty():
            return QPointF()
        return QPointF((position.x() - rect.x()) * self._image.width() / rect.width(),
                       (position.y() - rect.y()) * self._image.height() / rect.height())

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt's name
        button = event.button()
        if self._mask is None or button not in (Qt.MouseButton.LeftButton, Qt.MouseButton.RightButton):
            return super().mousePressEvent(event)
        erase = True if button == Qt.MouseButton.RightButton else None  # the right button always erases
        self._mask.begin_stroke(self.image_point(event.position()), erase)
        event.accept()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if self._mask is None:
            return super().mouseMoveEvent(event)
        self._cursor = QPointF(event.position())
        if event.buttons() & (Qt.MouseButton.LeftButton | Qt.MouseButton.RightButton):
            self._mask.stroke_to(self.image_point(event.position()))
        self.update()
        event.accept()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if self._mask is None:
            return super().mouseReleaseEvent(event)
        self._mask.end_stroke()
        event.accept()

    def leaveEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self._cursor = None
        self.update()
        super().leaveEvent(event)

    def is_crisp(self) -> bool:
        """True when the current image is drawn with nearest-neighbour scaling."""
        return self._image is not None and max(self._image.width(), self._image.height()) <= CRISP_MAX_SIDE

    def sizeHint(self) -> QSize:
        return QSize(640, 640)

    # ---- painting ------------------------------------------------------------------------------

    def target_rect(self) -> QRect:
        """Where the image is drawn, centred, in widget coordinates."""
        if self._image is None or self._image.isNull():
            return QRect()
        margin = 16
        avail_w, avail_h = max(1, self.width() - 2 * margin), max(1, self.height() - 2 * margin)
        w, h = self._image.width(), self._image.height()
        scale = min(avail_w / w, avail_h / h)
        if self.is_crisp() and scale >= 1:
            scale = int(scale)  # whole pixels: every source pixel becomes an equal square
        out_w, out_h = max(1, int(w * scale)), max(1, int(h * scale))
        return QRect((self.width() - out_w) // 2, (self.height() - out_h) // 2, out_w, out_h)

    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        if self._image is None or self._image.isNull():
            painter.setPen(QColor("#8a8f98"))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._placeholder)
            return
        rect = self.target_rect()
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, not self.is_crisp())
        painter.fillRect(rect.adjusted(-1, -1, 1, 1), QColor("#3a3d44"))
        painter.drawImage(rect, self._image)
        mask = self._mask.image() if self._mask is not None else None
        if mask is not None:
            draw_mask(painter, rect, mask, self.is_crisp())
            if self._cursor is not None:
                draw_brush(painter, self._cursor, self._mask.brush * rect.width() / self._image.width(),
                           self._mask.eraser)
        if self._caption:
            painter.setPen(QColor("#c9ccd2"))
            text_rect = QRect(0, rect.bottom() + 4, self.width(), self.height() - rect.bottom() - 4)
            align = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop
            painter.drawText(text_rect, align, self._caption)

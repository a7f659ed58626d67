"""The image canvas: shows preview frames and final images, scaled to fit.

Small images (the default model draws 64x64) are scaled by a whole number with nearest-neighbour, so each
pixel stays a crisp square the person can see; large images are scaled smoothly.
"""

from __future__ import annotations

from PySide6.QtCore import QRect, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QPainter, QPalette
from PySide6.QtWidgets import QSizePolicy, QWidget

from desktop_app.gui.images import pil_to_qimage

CRISP_MAX_SIDE = 128  # images up to this size are shown with nearest-neighbour, whole-number scaling


class ImageCanvas(QWidget):
    image_changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self._image: QImage | None = None
        self._placeholder = "Type a prompt and press Ctrl+Enter"
        self._caption = ""
        self.frames_shown = 0  # how many images were shown since the last clear()
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
        self._image = image if isinstance(image, QImage) else pil_to_qimage(image)
        self._caption = caption
        self.frames_shown += 1
        self.update()
        self.image_changed.emit()

    def clear(self, placeholder: str | None = None) -> None:
        self._image = None
        self._caption = ""
        self.frames_shown = 0
        if placeholder is not None:
            self._placeholder = placeholder
        self.update()
        self.image_changed.emit()

    def image(self) -> QImage | None:
        return self._image

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
        if self._caption:
            painter.setPen(QColor("#c9ccd2"))
            text_rect = QRect(0, rect.bottom() + 4, self.width(), self.height() - rect.bottom() - 4)
            align = Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop
            painter.drawText(text_rect, align, self._caption)

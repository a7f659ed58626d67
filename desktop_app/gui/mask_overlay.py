"""How the canvas shows the inpainting mask over the start image: a translucent colour where the model will
repaint (grey mask values in part), and the brush's outline under the mouse."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRect, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QPainter, QPen

OVERLAY_COLOUR = QColor(40, 120, 255)  # a bright blue: it stands out on skin, faces and most pictures
OVERLAY_ALPHA = 0.55  # at full mask


def overlay_image(mask: QImage) -> QImage:
    """``mask`` (greyscale, white = repaint) as a colour layer whose alpha follows the mask."""
    layer = QImage(mask.size(), QImage.Format.Format_ARGB32_Premultiplied)
    layer.fill(OVERLAY_COLOUR)
    grey = mask.convertToFormat(QImage.Format.Format_Grayscale8)
    # the same bytes read as alpha: the grey values become the alpha channel (a conversion would make it opaque)
    alpha = QImage(grey.constBits(), grey.width(), grey.height(), grey.bytesPerLine(),
                   QImage.Format.Format_Alpha8).copy()
    painter = QPainter(layer)
    painter.setCompositionMode(QPainter.CompositionMode.CompositionMode_DestinationIn)
    painter.drawImage(0, 0, alpha)
    painter.end()
    return layer


def draw_mask(painter: QPainter, rect: QRect, mask: QImage, crisp: bool) -> None:
    """The mask over the image drawn in ``rect`` (the same scaling as the image)."""
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, not crisp)
    painter.setOpacity(OVERLAY_ALPHA)
    painter.drawImage(rect, overlay_image(mask))
    painter.restore()


def draw_brush(painter: QPainter, centre: QPointF, diameter: float, eraser: bool) -> None:
    """The brush's outline (``diameter`` in widget pixels): a light ring with a dark edge, dashed for the
    eraser, so that it shows on light and dark pictures alike."""
    radius = max(1.0, diameter / 2)
    box = QRectF(centre.x() - radius, centre.y() - radius, 2 * radius, 2 * radius)
    painter.save()
    painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
    painter.setBrush(Qt.BrushStyle.NoBrush)
    painter.setPen(QPen(QColor(0, 0, 0, 160), 3))
    painter.drawEllipse(box)
    pen = QPen(QColor(255, 255, 255, 230), 1.5)
    if eraser:
        pen.setStyle(Qt.PenStyle.DashLine)
    painter.setPen(pen)
    painter.drawEllipse(box)
    painter.restore()

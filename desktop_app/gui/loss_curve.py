"""A live loss curve drawn with QPainter: raw points faint, a moving average on top."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

SMOOTH = 10


class LossCurve(QWidget):
    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.points: list[tuple[int, float]] = []
        self.total = 1
        self.setMinimumHeight(110)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        self.setToolTip("Training loss per step (faint) and its moving average")

    def clear(self, total: int = 1) -> None:
        self.points, self.total = [], max(total, 1)
        self.update()

    def add(self, step: int, loss: float) -> None:
        self.points.append((step, loss))
        self.update()

    def smoothed(self) -> list[tuple[int, float]]:
        out, window = [], []
        for step, loss in self.points:
            window = (window + [loss])[-SMOOTH:]
            out.append((step, sum(window) / len(window)))
        return out

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        area = QRectF(self.rect()).adjusted(36, 6, -6, -16)
        painter.setPen(self.palette().mid().color())
        painter.drawRect(area)
        if not self.points:
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "loss curve")
            return
        high = max(loss for _, loss in self.points) or 1.0
        painter.setPen(self.palette().text().color())
        painter.drawText(QRectF(0, area.top() - 4, 34, 14), Qt.AlignmentFlag.AlignRight, f"{high:.2g}")
        painter.drawText(QRectF(0, area.bottom() - 10, 34, 14), Qt.AlignmentFlag.AlignRight, "0")
        painter.drawText(QRectF(area.left(), area.bottom() + 2, area.width(), 14), Qt.AlignmentFlag.AlignRight,
                         f"step {self.points[-1][0]} / {self.total}")

        def where(step: int, loss: float) -> QPointF:
            return QPointF(area.left() + area.width() * step / self.total,
                           area.bottom() - area.height() * min(loss / high, 1.0))

        for series, colour, width in ((self.points, QColor(120, 160, 230, 110), 1.0),
                                      (self.smoothed(), QColor(40, 110, 230), 2.0)):
            path = QPainterPath(where(*series[0]))
            for point in series[1:]:
                path.lineTo(where(*point))
            painter.setPen(QPen(colour, width))
            painter.drawPath(path)

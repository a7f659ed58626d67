"""A strip of thumbnails for a batch: click one to view it on the canvas."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QListView, QListWidget, QListWidgetItem, QWidget

THUMB = 72


class ThumbnailStrip(QListWidget):
    chosen = Signal(int)  # index into the batch

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("thumbnails")
        self.setViewMode(QListView.ViewMode.IconMode)
        self.setFlow(QListView.Flow.LeftToRight)
        self.setWrapping(False)
        self.setMovement(QListView.Movement.Static)
        self.setIconSize(QSize(THUMB, THUMB))
        self.setSpacing(4)
        self.setFixedHeight(THUMB + 34)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.currentRowChanged.connect(self._on_row)

    def set_images(self, images: list[QImage], labels: list[str]) -> None:
        self.blockSignals(True)
        self.clear()
        for image, label in zip(images, labels):
            mode = Qt.TransformationMode.FastTransformation if image.width() <= 128 \
                else Qt.TransformationMode.SmoothTransformation
            pixmap = QPixmap.fromImage(image.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, mode))
            item = QListWidgetItem(QIcon(pixmap), label)
            item.setToolTip(label)
            self.addItem(item)
        self.setCurrentRow(0)
        self.blockSignals(False)

    def _on_row(self, row: int) -> None:
        if row >= 0:
            self.chosen.emit(row)

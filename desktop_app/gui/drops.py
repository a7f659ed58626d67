"""Image files dropped on a widget (the window: a dropped image's recipe fills the form)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QEvent, QObject, Signal

DROPPABLE = (".png", ".jpg", ".jpeg", ".webp")


class FileDrops(QObject):
    """An event filter: accepts drags that carry a local image file, and says which file was dropped."""

    dropped = Signal(object)  # the Path of the image file

    def __init__(self, widget):
        super().__init__(widget)
        widget.setAcceptDrops(True)
        widget.installEventFilter(self)

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        kind = event.type()
        if kind in (QEvent.Type.DragEnter, QEvent.Type.DragMove, QEvent.Type.Drop):
            path = dropped_file(event.mimeData())
            if path is None:
                event.ignore()
            else:
                event.acceptProposedAction()
                if kind == QEvent.Type.Drop:
                    self.dropped.emit(path)
            return True
        return super().eventFilter(watched, event)


def dropped_file(mime) -> Path | None:
    """The first local image file among dropped URLs."""
    if mime is None or not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.suffix.lower() in DROPPABLE and path.is_file():
                return path
    return None

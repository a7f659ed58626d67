"""The queue: jobs waiting while one runs. The window owns the list of requests; this shows it.

The waiting jobs stay in the window (not in the worker's event queue), so that they can be removed or
cleared; the window hands the next one to the worker when a run ends, however it ended.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QGroupBox, QHBoxLayout, QListWidget, QListWidgetItem, QVBoxLayout

from desktop_app.gui.buttons import action_button


class QueuePanel(QGroupBox):
    remove_requested = Signal(int)  # row
    clear_requested = Signal()

    def __init__(self, parent=None):
        super().__init__("Queue", parent)
        self.setObjectName("queue_panel")
        self.list = QListWidget()
        self.list.setObjectName("queue_list")
        self.list.setMaximumHeight(110)
        self.remove_button = action_button("Remove", "Remove the selected job from the queue (Del)", self._remove)
        self.clear_button = action_button("Clear", "Remove every waiting job (the running one goes on)",
                                          self.clear_requested)
        buttons = QHBoxLayout()
        buttons.addWidget(self.remove_button)
        buttons.addWidget(self.clear_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 6)
        layout.addWidget(self.list)
        layout.addLayout(buttons)
        self.set_jobs([])

    def set_jobs(self, requests: list) -> None:
        row = self.list.currentRow()
        self.list.clear()
        for request in requests:
            seed = "random seed" if request.seed is None else f"seed {request.seed}"
            count = f" ×{request.batch_size}" if request.batch_size > 1 else ""
            item = QListWidgetItem(f"{request.prompt[:48] or '(no prompt)'} · {seed}{count}")
            item.setToolTip(f"{request.prompt}\n{request.steps} steps, {request.sampler}, "
                            f"{request.width}x{request.height}")
            self.list.addItem(item)
        if requests:
            self.list.setCurrentRow(min(max(row, 0), len(requests) - 1))
        self.setTitle(f"Queue ({len(requests)} waiting)" if requests else "Queue")
        self.setVisible(bool(requests))

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self._remove()
            return
        super().keyPressEvent(event)

    def _remove(self) -> None:
        row = self.list.currentRow()
        if row >= 0:
            self.remove_requested.emit(row)

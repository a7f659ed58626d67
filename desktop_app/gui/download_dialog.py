"""Download a model by Hugging Face repo id: a small dialog (repo id, progress bar, Cancel) and its worker.

The download runs in a WorkerThread (desktop_app.models.hub_download: resumable, verified, torch-free); the
finished folder is added to the library here, on the UI thread. Cancel stops within one chunk and keeps the
partial files, so Download again continues them. The models panel opens it with ``DownloadDialog(self).exec()``.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Signal, Slot
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.gui.workers import WorkerThread

log = logging.getLogger(__name__)


class DownloadWorker(QObject):
    progress = Signal(object, object)  # done bytes, total bytes (Python ints: beyond 2**31)
    finished = Signal(str)  # the downloaded folder
    failed = Signal(str, str)  # kind (a FailureKind value: "model", "bad_input", "disk", ...), one readable line
    cancelled = Signal()
    _requested = Signal(str, str, object)  # repo id, destination root, threading.Event

    def __init__(self):
        super().__init__()
        self._requested.connect(self._run)

    def start(self, repo_id: str, dest_root: str, cancel: threading.Event) -> None:
        self._requested.emit(repo_id, dest_root, cancel)  # queued to the worker thread

    @Slot(str, str, object)
    def _run(self, repo_id: str, dest_root: str, cancel: threading.Event) -> None:
        from desktop_app.errors import FailureKind, failure_kind, one_line
        from desktop_app.models import hub_download

        try:
            with hub_download.app_offline_lifted():  # the user asked for it; offline again afterwards
                folder = hub_download.download(repo_id, dest_root, progress=self.progress.emit, cancel=cancel,
                                               endpoint=os.environ.get("HF_ENDPOINT") or None)
        except Exception as exc:  # noqa: BLE001 - the worker turns every failure into a readable signal
            kind = failure_kind(exc)
            if kind is FailureKind.CANCELLED:
                self.cancelled.emit()
            elif kind.readable and not isinstance(exc, OSError):  # the hub's or the library's own words
                self.failed.emit(kind.value, " ".join(str(exc).split()))
            else:
                log.exception("download of %s failed", repo_id)
                self.failed.emit(kind.value, f"Download failed: {one_line(exc, 1000)}")
        else:
            self.finished.emit(str(folder))


class DownloadDialog(QDialog):
    """Repo id in, a library entry out (``downloaded(name)``)."""

    downloaded = Signal(str)  # the library name of the new model

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Download a model")
        self.repo = QLineEdit(placeholderText="owner/name, e.g. stabilityai/sdxl-turbo")
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.status = QLabel("A diffusers model from the Hugging Face hub: .safetensors weights only, "
                             "checked against the hub's hashes.")
        self.status.setWordWrap(True)
        self.download_button = QPushButton("Download")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        buttons = QDialogButtonBox()
        buttons.addButton(self.download_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.ActionRole)
        buttons.addButton(QDialogButtonBox.StandardButton.Close).clicked.connect(self.close)
        layout = QVBoxLayout(self)
        for widget in (QLabel("Repo id"), self.repo, self.bar, self.status, buttons):
            layout.addWidget(widget)
        self.download_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self._cancel = threading.Event()
        self._thread = WorkerThread("download")  # no Qt parent: it outlives the dialog until it has quit
        self.worker = DownloadWorker()
        self.worker.moveToThread(self._thread)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        self._thread.start()
        self._repo_id = ""

    def start(self) -> None:
        from desktop_app.models import hub_download
        from desktop_app import paths
        from desktop_app.errors import ModelError

        try:
            self._repo_id = hub_download.check_repo_id(self.repo.text())
        except ModelError as exc:
            return self._show(str(exc))
        self._cancel = threading.Event()
        self._busy(True)
        self._show(f"Downloading {self._repo_id}…")
        self.worker.start(self._repo_id, str(paths.models_dir() / "downloads"), self._cancel)

    def cancel(self) -> None:
        self._cancel.set()

    def _busy(self, busy: bool) -> None:
        self.download_button.setEnabled(not busy)
        self.repo.setEnabled(not busy)
        self.cancel_button.setEnabled(busy)

    def _show(self, text: str) -> None:
        self.status.setText(text)

    def _on_progress(self, done: int, total: int) -> None:
        from desktop_app.models.display import format_size

        if total:
            self.bar.setValue(int(1000 * done / total))
        self._show(f"Downloading {self._repo_id}: {format_size(done)} of {format_size(total)}")

    def _on_finished(self, folder: str) -> None:
        from desktop_app.models import model_library
        from desktop_app.errors import ModelError

        self._busy(False)
        name = self._repo_id.rpartition("/")[2]
        try:
            existing = model_library.find(name)
            if existing is None or existing.path != str(Path(folder).resolve()):
                name = model_library.add(folder, name=name, source="downloaded").name
        except ModelError as exc:
            return self._show(f"Downloaded to {folder}, but not added to the library: {exc}")
        self.bar.setValue(self.bar.maximum())
        self._show(f"Downloaded {self._repo_id} as {name}.")
        self.downloaded.emit(name)

    def _on_failed(self, _kind: str, message: str) -> None:
        self._busy(False)
        self._show(message)

    def _on_cancelled(self) -> None:
        self._busy(False)
        self._show("Cancelled. The partial files are kept: Download continues them.")

    def done(self, result: int) -> None:
        self._cancel.set()
        self._thread.quit()
        self._thread.wait(30_000)
        super().done(result)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self._cancel.set()
        self._thread.quit()
        self._thread.wait(30_000)
        super().closeEvent(event)

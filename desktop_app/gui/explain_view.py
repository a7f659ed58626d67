"""View → Explain (issue 18): how the form's image is made, section by section, in a dock beside the gallery.

"Explain this image" runs the engine's explain job on the form's request (ExplainWorker, its own thread) with
its progress as lines and a Cancel; then one page per section of the report: the section titles on the left,
the figures (scaled to fit, whole pixels for small ones) and the caption on the right. The sections are the
report's own (``studio/explain_report.build_sections``), so the view and the exported report say the same.
"Export…" writes the report (index.html, report.pdf, PNG figures, JSON numbers) into a chosen folder, with the
creation record of the image explained when there is one (record.json and a page "How this image was made": the
window's canvas image made from the explained prompt, ``explained_image.py``); "Open report" opens its index.html
(written to the outputs folder first when it was not exported yet). What explain refuses (a transformer family, a
start image) is told in one line.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import QSize, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QImage, QPixmap
from PySide6.QtWidgets import (
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QSizePolicy,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from desktop_app.engine.compare_grid import plan
from desktop_app.errors import RequestError, one_line
from desktop_app.gui.compare_fields import CompareFields
from desktop_app.gui.explain_worker import Explained, ExplainWorker
from desktop_app.gui.images import pil_to_qimage
from desktop_app.gui.workers import WorkerThread

PROGRESS_LINES = 6  # the progress box's height, in lines
HINT = ("Explain this image runs the form's prompt, model, seed, guidance and steps once more, recording every "
        "step, and shows how the image came from the words, section by section.")


def scaled_to_fit(image: QImage, box: QSize) -> QImage:
    """``image`` as large as fits in ``box``, its aspect kept: enlarged by a whole factor with nearest pixels
    (small figures and latents stay crisp), shrunk smoothly."""
    if image.isNull() or box.width() < 1 or box.height() < 1:
        return image
    scale = min(box.width() / image.width(), box.height() / image.height())
    if scale >= 1:
        factor = math.floor(scale)
        return image if factor == 1 else image.scaled(image.width() * factor, image.height() * factor,
                                                      Qt.AspectRatioMode.IgnoreAspectRatio,
                                                      Qt.TransformationMode.FastTransformation)
    return image.scaled(max(1, round(image.width() * scale)), max(1, round(image.height() * scale)),
                        Qt.AspectRatioMode.IgnoreAspectRatio, Qt.TransformationMode.SmoothTransformation)


class FigureLabel(QLabel):
    """One figure of a section (a report PNG), rescaled to the room it gets whenever that changes."""

    def __init__(self, image: QImage, name: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.image, self.name = image, name
        self.setObjectName("explain_figure")
        self.setToolTip(name)
        self.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)  # the layout decides
        self.setMinimumSize(48, 48)

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        self.setPixmap(QPixmap.fromImage(scaled_to_fit(self.image, self.contentsRect().size())))


class ExplainView(QWidget):
    """``request_of()`` gives the form's GenerationRequest (or raises RequestError); ``output_dir()`` the
    folder where "Open report" writes a report that was not exported. ``explain``: the job's function (tests
    give a quick fake; None: the engine's). ``image_of(request)``: the image file the explained request stands for
    (its creation record goes into the report), or None; ``history_of()``: the History to read that record from
    (None: the user folder's)."""

    ended = Signal(str)  # "finished", "failed" or "cancelled", after the view shows it
    exported = Signal(str)  # the folder the report was written into

    def __init__(self, request_of: Callable, output_dir: Callable[[], Path], device: str = "auto",
                 engine_factory: Callable | None = None, explain: Callable | None = None,
                 parent: QWidget | None = None, image_of: Callable | None = None,
                 history_of: Callable | None = None):
        super().__init__(parent)
        self.setObjectName("explain_view")
        self.request_of, self.output_dir = request_of, output_dir
        self.device, self.engine_factory, self.explain_function = device, engine_factory, explain
        self.worker: ExplainWorker | None = None
        self._thread: WorkerThread | None = None
        self.running = False
        self.data: dict | None = None
        self.image_of, self.history_of = image_of, history_of
        self.image: Path | None = None  # the image file explained, for its creation record
        self.sections: list = []
        self.report_folder: Path | None = None
        self.figure_labels: list[FigureLabel] = []
        self._lines: list[str] = []
        self._progress_line = False  # the last line is a step count, replaced by the next one
        self._began = 0.0
        self._build()
        self._set_running(False)

    def _build(self) -> None:
        self.explain_button = _button("Explain this image", "explain_button",
                                      "Run the form's request once more and show how it was made")
        self.cancel_button = _button("Cancel", "explain_cancel_button", "Stop the explain run")
        self.export_button = _button("Export…", "explain_export_button",
                                     "Write the report (index.html, report.pdf, the figures and numbers) "
                                     "into a folder")
        self.open_button = _button("Open report", "explain_open_button", "Open the report's index.html")
        self.explain_button.clicked.connect(self.explain)
        self.cancel_button.clicked.connect(self.cancel)
        self.export_button.clicked.connect(self.choose_export)
        self.open_button.clicked.connect(self.open_report)
        self.message_label = QLabel(HINT)  # what happened, or why not, in one line
        self.message_label.setObjectName("explain_message")
        self.message_label.setWordWrap(True)
        self.message_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QHBoxLayout()
        for button in (self.explain_button, self.cancel_button):
            buttons.addWidget(button)
        buttons.addWidget(self.message_label, 1)
        for button in (self.export_button, self.open_button):
            buttons.addWidget(button)
        self.progress_box = QPlainTextEdit()
        self.progress_box.setObjectName("explain_progress")
        self.progress_box.setReadOnly(True)
        self.progress_box.setMaximumHeight(self.fontMetrics().lineSpacing() * PROGRESS_LINES + 12)
        self.progress_box.setPlaceholderText("progress shows here while explain runs")

        self.section_list = QListWidget()
        self.section_list.setObjectName("explain_sections")
        self.section_list.currentRowChanged.connect(self.show_section)
        self.title_label = QLabel()
        self.title_label.setObjectName("explain_title")
        self.title_label.setStyleSheet("font-size: 15px; font-weight: 600;")
        self.figure_area = QWidget()
        self.figure_area.setObjectName("explain_figures")
        self._figures_layout = QVBoxLayout(self.figure_area)
        self._figures_layout.setContentsMargins(0, 0, 0, 0)
        self.caption_label = QLabel()
        self.caption_label.setObjectName("explain_caption")
        self.caption_label.setWordWrap(True)
        self.caption_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        page = QWidget()
        page_layout = QVBoxLayout(page)
        page_layout.setContentsMargins(6, 0, 0, 0)
        page_layout.addWidget(self.title_label)
        page_layout.addWidget(self.figure_area, 1)
        page_layout.addWidget(self.caption_label)
        side = QWidget()  # the sections, and under them what the run is doing
        side_layout = QVBoxLayout(side)
        side_layout.setContentsMargins(0, 0, 0, 0)
        side_layout.addWidget(self.section_list, 1)
        side_layout.addWidget(self.progress_box)
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(side)
        splitter.addWidget(page)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([300, 900])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 8)
        self.compare_fields = CompareFields()
        layout.addLayout(buttons)
        layout.addWidget(self.compare_fields)
        layout.addWidget(splitter, 1)

    # ---- the run ---------------------------------------------------------------------------------------

    @Slot()
    def explain(self) -> bool:
        """Explain the form's request in the worker's thread; False when busy or the form has a bad value."""
        if self.running:
            return False
        try:
            request = self.request_of()
            compare = self.compare_fields.axes()
            if compare is not None:
                plan(request, *compare, fields=("compare grid X", "compare grid Y"))
        except RequestError as exc:
            self._tell(f"Check the settings: {exc}")
            return False
        self._clear()
        self.image = self._image_for(request)  # taken now: the canvas may show another image by the export
        self._ensure_worker()
        self.worker.other_prompts = self._recent_prompts(request.prompt)  # section 2 matches them too
        self.worker.compare = compare  # section 6's compare grid, or None
        self._began = time.perf_counter()
        self._set_running(True)
        self._tell("Explaining: the model runs the request once more, then the guidance comparisons…")
        self.worker.submit(request)
        return True

    def _recent_prompts(self, prompt: str, count: int = 3) -> list[str]:
        """The history's most recent prompts other than ``prompt`` (none without a history, or when it fails)."""
        history = self.history_of() if self.history_of else None
        found: list[str] = []
        try:
            entries = history.entries(limit=50) if history is not None else []
        except Exception:  # a damaged history costs only these texts
            entries = []
        for entry in entries:
            text = (entry.prompt or "").strip()
            if text and text != prompt.strip() and text not in found:
                found.append(text)
        return found[:count]

    @Slot()
    def cancel(self) -> None:
        if self.running and self.worker is not None:
            self.worker.cancel()
            self.cancel_button.setEnabled(False)
            self._tell("Cancelling…")

    def _ensure_worker(self) -> None:
        if self.worker is not None:
            return
        self.worker = ExplainWorker(self.device, self.engine_factory, explain=self.explain_function)
        self._thread = WorkerThread("explain-worker")
        self.worker.moveToThread(self._thread)
        self.worker.stage.connect(self._on_stage)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        self._thread.start()

    @Slot(str, str)
    def _on_stage(self, stage: str, detail: str) -> None:
        self._add_line(f"{stage}: {detail}" if detail else stage, progress=False)

    @Slot(int, int, object, float, str)
    def _on_progress(self, step: int, total: int, _preview, elapsed: float, stage: str) -> None:
        self._add_line(f"{stage}: step {step} of {total} ({elapsed:.1f} s)", progress=True)

    @Slot(object)
    def _on_finished(self, explained: Explained) -> None:
        self.data, self.sections = explained.data, list(explained.sections)
        for section in self.sections:
            self.section_list.addItem(f"{section.number}. {section.title}")
        request = self.data["request"]
        seconds = time.perf_counter() - self._began
        self._tell(f"Explained in {seconds:.1f} s: {request['model']}, seed {request['seed']}, "
                   f"{request['steps']} steps, guidance {request['guidance']:g}. Pick a section on the left.")
        self._set_running(False)
        self.section_list.setCurrentRow(0)
        self.ended.emit("finished")

    @Slot(str, str)
    def _on_failed(self, _kind: str, message: str) -> None:
        self._set_running(False)
        self._tell(f"Cannot explain this: {one_line_of(message)}")
        self.ended.emit("failed")

    @Slot()
    def _on_cancelled(self) -> None:
        self._set_running(False)
        self._tell("Cancelled: nothing to show.")
        self.ended.emit("cancelled")

    # ---- the sections ----------------------------------------------------------------------------------

    @Slot(int)
    def show_section(self, index: int) -> None:
        """Section ``index`` (0-based, in list order): its title, its figures and its caption."""
        for label in self.figure_labels:
            self._figures_layout.removeWidget(label)
            label.deleteLater()
        self.figure_labels = []
        if not 0 <= index < len(self.sections):
            self.title_label.clear()
            self.caption_label.clear()
            return
        section = self.sections[index]
        self.title_label.setText(f"{section.number}. {section.title}")
        self.caption_label.setText(section.caption)
        for name, picture in section.figures:
            label = FigureLabel(pil_to_qimage(picture), name)
            self.figure_labels.append(label)
            # each figure gets room in proportion to its own height, so none is squeezed to a strip
            self._figures_layout.addWidget(label, max(1, picture.height))

    def show_section_titled(self, words: str) -> bool:
        """Show the first section whose title holds ``words`` (case-insensitive)."""
        for k, section in enumerate(self.sections):
            if words.lower() in section.title.lower():
                self.section_list.setCurrentRow(k)
                return True
        return False

    # ---- the report ------------------------------------------------------------------------------------

    @Slot()
    def choose_export(self) -> None:
        if self.data is None:
            return
        start = self.report_folder.parent if self.report_folder else self.output_dir()
        chosen = QFileDialog.getExistingDirectory(self, "Folder for the explain report", str(start))
        if chosen:
            self.export_to(report_folder_in(Path(chosen), self.data["request"]["seed"]))

    def export_to(self, folder: Path) -> Path | None:
        """Write the report into ``folder``; its index.html, or None (the reason is shown) when it cannot."""
        from desktop_app.studio.explain_report import write_report
        from desktop_app.studio.outputs import OutputProblem, check_output

        if self.data is None:
            return None
        folder = Path(folder)
        try:
            check_output(folder / "index.html", folder, what="the report folder")
            record, missing = self._record()
            write_report(self.data, folder, record=record)
        except OutputProblem as exc:
            self._tell(f"The report was not written: {exc}")
            return None
        except OSError as exc:
            self._tell(f"The report was not written: {exc.strerror or one_line(exc)} ({folder})")
            return None
        self.report_folder = folder
        self.open_button.setToolTip(f"Open {folder / 'index.html'}")
        with_record = f", the creation record of {self.image.name}" if record is not None else ""
        self._tell(f"Report written to {folder} (index.html, report.pdf, the figures and their numbers"
                   f"{with_record})" + (f"; no creation record: {missing}" if missing else ""))
        self.exported.emit(str(folder))
        return folder / "index.html"

    def _image_for(self, request) -> Path | None:
        if self.image_of is None:
            return None
        try:
            return self.image_of(request)
        except (OSError, ValueError):  # a file that went away or cannot be read: a report without a record
            return None

    def _record(self) -> tuple[dict | None, str | None]:
        """The explained image's creation record (``creation_record.for_export``), or None and why not."""
        if self.image is None:
            return None, None
        from desktop_app.studio.creation_record import for_export

        try:
            return for_export(self.image, self.history_of() if self.history_of else None), None
        except RequestError as exc:
            return None, str(exc).removeprefix("image: ")
        except (OSError, sqlite3.Error, ValueError) as exc:
            return None, one_line(exc)

    @Slot()
    def open_report(self) -> bool:
        """Open the report's index.html with the system's browser; written to the outputs folder first when it
        was not exported yet."""
        if self.data is None:
            return False
        if self.report_folder is None or not (self.report_folder / "index.html").is_file():
            stamp = time.strftime("%Y%m%d-%H%M%S")
            folder = Path(self.output_dir()) / "explain" / f"{stamp}-seed{self.data['request']['seed']}"
            if self.export_to(folder) is None:
                return False
        index = self.report_folder / "index.html"
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(index))):
            self._tell(f"No program opened the report; it is at {index}")
            return False
        return True

    # ---- state -----------------------------------------------------------------------------------------

    def message(self) -> str:
        return self.message_label.text()

    def progress_lines(self) -> list[str]:
        return list(self._lines)

    def _tell(self, text: str) -> None:
        self.message_label.setText(text)

    def _add_line(self, text: str, progress: bool) -> None:
        if progress and self._progress_line and self._lines:
            self._lines[-1] = text
        else:
            self._lines.append(text)
        self._progress_line = progress
        self.progress_box.setPlainText("\n".join(self._lines))
        bar = self.progress_box.verticalScrollBar()
        bar.setValue(bar.maximum())

    def _clear(self) -> None:
        self.data, self.sections, self.report_folder, self.image = None, [], None, None
        self._lines, self._progress_line = [], False
        self.progress_box.clear()
        self.section_list.clear()
        self.show_section(-1)

    def _set_running(self, running: bool) -> None:
        self.running = running
        self.explain_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.export_button.setEnabled(not running and self.data is not None)
        self.open_button.setEnabled(not running and self.data is not None)

    def shutdown(self) -> None:
        """Cancel a running explain and end the worker's thread. Safe to call twice."""
        if self._thread is not None and self._thread.isRunning():
            self.worker.cancel()
            self._thread.quit()
            self._thread.wait()

    def closeEvent(self, event) -> None:
        self.shutdown()
        super().closeEvent(event)


def report_folder_in(chosen: Path, seed) -> Path:
    """Where Export writes in the folder the person chose: there, when it is empty or holds a report already;
    else a folder of its own inside it (``explain-seed…``), so that a report's files never mix with others."""
    try:
        empty = not any(chosen.iterdir())
    except OSError:
        empty = True  # missing (made by the export) or unreadable (the export tells why)
    return chosen if empty or (chosen / "index.html").is_file() else chosen / f"explain-seed{seed}"


def one_line_of(message: str) -> str:
    return " ".join(message.split()) or "the explain job stopped without a reason"


def add_explain_dock(window: QMainWindow) -> tuple[ExplainView, QDockWidget]:
    """The view in a dock along the window's bottom, hidden until View → Explain… shows it (half the window's
    height). The bottom, not a tab beside the gallery: the figures are rows of pictures and need the window's
    whole width, which the right side (beside the form and the run view) never has."""
    from desktop_app.gui.explained_image import ExplainedImage

    worker, explained = window.controller.worker, ExplainedImage(window)
    view = ExplainView(window.form.build_request, window.output_dir, worker.device, worker._engine_factory,
                       image_of=explained.file_for, history_of=lambda: window.controller.history)
    dock = QDockWidget("Explain", window)
    dock.setObjectName("explain_dock")
    dock.setWidget(view)
    window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
    dock.hide()

    def show() -> None:
        dock.show()
        dock.raise_()
        if dock.height() < window.height() * 0.4 and not dock.isFloating():  # the figures need room
            window.resizeDocks([dock], [int(window.height() * 0.55)], Qt.Orientation.Vertical)

    window.menus.explain_action.triggered.connect(show)
    return view, dock


def _button(text: str, name: str, tip: str) -> QPushButton:
    button = QPushButton(text)
    button.setObjectName(name)
    button.setToolTip(tip)
    return button

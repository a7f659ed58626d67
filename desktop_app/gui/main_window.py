"""The main window: the form on the left; the stage strip, canvas and progress on the right; status bar below.

The window never touches torch. It builds a GenerationRequest from the form, hands it to the
GenerationWorker in its thread, and draws what the worker's signals report.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from PySide6.QtCore import QByteArray, Qt, QTimer, Signal, Slot
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.errors import RequestError

from desktop_app.gui import model_info, theme
from desktop_app.studio import outputs
from desktop_app.studio import png_recipe as saving
from desktop_app.studio import settings as app_settings
from desktop_app.studio import history as history_db
from desktop_app.studio.history import History
from desktop_app.gui.about_dialog import APP_NAME, AboutDialog
from desktop_app.gui.canvas import ImageCanvas
from desktop_app.gui.gallery import GalleryPanel
from desktop_app.gui.generation_form import GenerationForm
from desktop_app.gui.images import pil_to_qimage
from desktop_app.gui.models_panel import ModelsPanel
from desktop_app.gui.queue_panel import QueuePanel
from desktop_app.gui.stage_strip import STAGES, StageStrip, parse_tokens
from desktop_app.gui.thumbnails import ThumbnailStrip
from desktop_app.gui.timeline_bar import TimelineBar
from desktop_app.gui.training_panel import TrainingPanel
from desktop_app.gui.workers import GenerationWorker, UpscaleJob, UpscaleWorker, WorkerThread

FAILURE_TITLES = {
    "bad_input": "Check the settings",
    "model": "Model problem",
    "out_of_memory": "Out of memory",
    "engine": "The engine stopped",
    "internal": "Unexpected error",
}
STAGE_LABELS = {name: label for name, label, _ in STAGES} | {"load": "Loading model", "save": "Saving"}


class MessageArea(QFrame):
    """A non-modal message above the canvas (errors, warnings), closed with its × button."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("message_area")
        self.title = QLabel()
        self.title.setObjectName("message_title")
        self.text = QLabel()
        self.text.setObjectName("message_text")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        close = QToolButton()
        close.setText("×")
        close.setAutoRaise(True)
        close.setToolTip("Dismiss")
        close.clicked.connect(self.hide)
        column = QVBoxLayout()
        column.setSpacing(2)
        column.addWidget(self.title)
        column.addWidget(self.text)
        row = QHBoxLayout(self)
        row.setContentsMargins(12, 8, 6, 8)
        row.addLayout(column, 1)
        row.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        self.setStyleSheet(
            "QFrame#message_area { background: #4a2426; border: 1px solid #a33a3a; border-radius: 6px; }"
            "QLabel#message_title { color: #ffb4b4; font-weight: 600; }"
            "QLabel#message_text { color: #f2dede; }"
            "QToolButton { color: #f2dede; font-size: 16px; }")
        self.hide()

    def show_message(self, title: str, text: str) -> None:
        self.title.setText(title)
        self.text.setText(text)
        self.show()


class MainWindow(QMainWindow):
    # UI-thread signals for what the person sees (tests and future panels such as a history listen to them)
    frame_shown = Signal(int, int)  # step, total: a progress update (and its preview, if any) is on screen
    run_ended = Signal(str)  # "finished", "failed" or "cancelled", after the window has updated

    def __init__(self, model: str | None = None, device: str = "auto", engine_factory=None):
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.setObjectName("main_window")
        self.resize(1200, 780)
        self._running = False
        self._cancelling = False
        self._request = None
        self._result = None  # the last Finished
        self._images = []  # its images as QImages
        self._shown_index = 0
        self._first_step: tuple[int, float] | None = None
        self._about: AboutDialog | None = None
        self._upscale_worker: UpscaleWorker | None = None  # made at the first upscale job

        self._build_left()
        self._build_right()
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self.left_panel)
        splitter.addWidget(self.viewer)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([360, 840])
        self.setCentralWidget(splitter)
        self._build_status_bar()
        self._build_actions()

        # the worker and its thread: the only way to the engine
        self.worker = GenerationWorker(device=device, engine_factory=engine_factory)
        self._thread = WorkerThread("generation-worker")
        self.worker.moveToThread(self._thread)
        self.worker.stage.connect(self._on_stage)
        self.worker.progress.connect(self._on_progress)
        self.worker.finished.connect(self._on_finished)
        self.worker.failed.connect(self._on_failed)
        self.worker.cancelled.connect(self._on_cancelled)
        self.worker.warmed.connect(self._on_warmed)
        self._thread.start()
        # app.quit() (session end, a signal handler) skips closeEvent: stop the thread then too
        app = QApplication.instance()
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

        if model:
            self.form.select_model(model)
        self.form.model_changed.connect(self._on_model_changed)
        self._on_model_changed(self.form.model())
        self._set_running(False)
        default_missing = not model_info.looks_like_model_folder(model_info.default_model_dir())
        if self.form.model() == "default" and default_missing:
            self.statusBar().showMessage("Ready. The embedded default model is not installed: choose a model "
                                         "folder under Model → Browse folder…")
        else:
            self.statusBar().showMessage("Ready")
        self._init_studio()

    # ---- building ------------------------------------------------------------------------------

    def _build_left(self) -> None:
        self.form = GenerationForm()
        scroll = QScrollArea()
        scroll.setWidget(self.form)
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

        self.generate_button = QPushButton("Generate")
        self.generate_button.setObjectName("generate_button")
        self.generate_button.setToolTip("Generate (Ctrl+Enter)")
        self.generate_button.setDefault(True)
        self.generate_button.setMinimumHeight(36)
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancel_button")
        self.cancel_button.setToolTip("Cancel (Esc)")
        self.cancel_button.setMinimumHeight(36)
        self.cancel_button.clicked.connect(self.cancel)
        buttons = QHBoxLayout()
        buttons.addWidget(self.generate_button, 2)
        buttons.addWidget(self.cancel_button, 1)
        hint = QLabel("Ctrl+Enter to generate · Esc to cancel")
        hint.setObjectName("shortcut_hint")
        hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        hint.setStyleSheet("color: palette(placeholder-text); font-size: 11px;")

        self.left_panel = QWidget()
        self.left_panel.setObjectName("left_panel")
        self.left_panel.setMinimumWidth(320)
        self.left_panel.setMaximumWidth(480)
        layout = QVBoxLayout(self.left_panel)
        layout.setContentsMargins(10, 10, 6, 10)
        layout.addWidget(scroll, 1)
        layout.addLayout(buttons)
        layout.addWidget(hint)
        self.generate_button.setStyleSheet(
            "QPushButton#generate_button { background: #2f6fde; color: white; font-weight: 600;"
            " border: 1px solid #2a63c7; border-radius: 4px; padding: 6px 14px; }"
            "QPushButton#generate_button:hover { background: #3b7cf0; }"
            "QPushButton#generate_button:disabled { background: #5d6b85; color: #c8cdd6;"
            " border-color: #5d6b85; }")

    def _build_right(self) -> None:
        self.stage_strip = StageStrip()
        self.message_area = MessageArea()
        self.canvas = ImageCanvas()
        self.step_label = QLabel("Ready")
        self.step_label.setObjectName("step_label")
        self.step_label.setFixedWidth(300)  # the bar must not jump as the text changes
        self.progress_bar = QProgressBar()
        self.progress_bar.setObjectName("progress")
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.progress_bar.setTextVisible(False)
        self.progress_bar.setFixedHeight(10)
        progress_row = QHBoxLayout()
        progress_row.addWidget(self.step_label)
        progress_row.addWidget(self.progress_bar, 1)
        self.thumbnails = ThumbnailStrip()
        self.thumbnails.chosen.connect(self.show_image)
        self.thumbnails.hide()

        self.viewer = QFrame()
        self.viewer.setObjectName("viewer")
        self.viewer.setStyleSheet(
            "QFrame#viewer { background: #1f2126; }"
            "QFrame#viewer QLabel#step_label { color: #d7dae0; }"
            "QFrame#viewer QProgressBar { background: #2a2d33; border: none; border-radius: 5px; }"
            "QFrame#viewer QProgressBar::chunk { background: #2f6fde; border-radius: 5px; }"
            "QFrame#viewer QListWidget { background: #1a1c20; color: #c9ccd2; border: 1px solid #2f3238; }")
        layout = QVBoxLayout(self.viewer)
        layout.setContentsMargins(14, 12, 14, 10)
        layout.setSpacing(8)
        layout.addWidget(self.stage_strip)
        layout.addWidget(self.message_area)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.thumbnails)
        layout.addLayout(progress_row)

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.device_label = QLabel("Device: not loaded yet")
        self.device_label.setObjectName("device_label")
        self.model_label = QLabel()
        self.model_label.setObjectName("model_label")
        self.time_label = QLabel("")
        self.time_label.setObjectName("time_label")
        for label in (self.model_label, self.device_label, self.time_label):
            label.setContentsMargins(8, 0, 8, 0)
            bar.addPermanentWidget(label)

    def _build_actions(self) -> None:
        self.generate_action = QAction("&Generate", self)
        self.generate_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
        self.generate_action.triggered.connect(self.generate)
        self.cancel_action = QAction("&Cancel", self)
        self.cancel_action.setShortcut(QKeySequence(Qt.Key.Key_Escape))
        self.cancel_action.triggered.connect(self.cancel)
        self.save_action = QAction("&Save As…", self)
        self.save_action.setShortcut(QKeySequence.StandardKey.Save)
        self.save_action.triggered.connect(self.save_as)
        self.upscale_action = QAction("&Upscale an Image…", self)
        self.upscale_action.setShortcut(QKeySequence("Ctrl+U"))
        self.upscale_action.setToolTip("Enlarge an image file with the upscaler model (Ctrl+U)")
        self.upscale_action.triggered.connect(self.choose_image_to_upscale)
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        about_action = QAction("&About", self)
        about_action.triggered.connect(self.show_about)

        menus = self.menuBar()
        file_menu = menus.addMenu("&File")
        file_menu.addAction(self.upscale_action)
        file_menu.addAction(self.save_action)
        file_menu.addSeparator()
        file_menu.addAction(quit_action)
        run_menu = menus.addMenu("&Image")
        run_menu.addAction(self.generate_action)
        run_menu.addAction(self.cancel_action)
        help_menu = menus.addMenu("&Help")
        help_menu.addAction(about_action)
        self.about_action = about_action
        for action in (self.generate_action, self.cancel_action, self.save_action):
            action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.save_action.setEnabled(False)

    # ---- commands ------------------------------------------------------------------------------

    @Slot()
    def generate(self) -> None:
        """Queue the form's request (runs × batch); it starts at once when nothing is running."""
        if not self._running and not self._may_replace_unsaved():
            return
        if not self._running:
            self.message_area.hide()
        self.form.clear_marks()
        try:
            request = self.form.build_request()
        except RequestError as exc:
            self._show_bad_input(str(exc), exc.field)
            return
        self._remember(request)
        self._queue.extend(runs_of(request, self.form.runs_spin.value()))
        self.queue_panel.set_jobs(self._queue)
        if self._running:
            self.statusBar().showMessage(f"Queued · {len(self._queue)} waiting")
        else:
            self._start_next()

    def _may_replace_unsaved(self) -> bool:
        """True when no image exists only in memory, or the person agrees to let it go."""
        if not self._hold_queue:
            return True
        answer = self.ask("Discard the image that was not saved?",
                          "The last image could not be saved and exists only here; a new run replaces it. "
                          "Save it first with File → Save As… (Ctrl+S), or go on and lose it?")
        if answer != QMessageBox.StandardButton.Yes:
            self.statusBar().showMessage("Save the image first: File → Save As… (Ctrl+S)")
            return False
        self._hold_queue = False
        return True

    def _start_next(self) -> None:
        if self._running or not self._queue:
            return
        if self._hold_queue:  # the next run would replace an image that exists nowhere else
            self.statusBar().showMessage(f"Queue paused · {len(self._queue)} waiting: save the image first "
                                         "(File → Save As…), or press Generate to go on")
            return
        request = self._queue.pop(0)
        self.queue_panel.set_jobs(self._queue)
        self.message_area.hide()
        self._request = request
        self._first_step = None
        self._set_running(True)
        self.stage_strip.reset(upscale=request.upscale is not None)
        self.thumbnails.hide()
        self.progress_bar.setRange(0, request.steps)
        self.progress_bar.setValue(0)
        self.step_label.setText("Starting…")
        self.time_label.setText("")
        self.statusBar().showMessage("Generating…")
        self.worker.submit(request)

    @Slot()
    def cancel(self) -> None:
        if not self._running or self._cancelling:
            return
        self._cancelling = True
        self.worker.cancel()  # direct call: the engine sees it at its next step
        if self._upscale_worker is not None:
            self._upscale_worker.cancel()  # an upscale job stops before its next tile
        self.cancel_button.setEnabled(False)
        self.cancel_action.setEnabled(False)
        self.step_label.setText("Cancelling…")
        self.statusBar().showMessage("Cancelling…")

    @Slot()
    def save_as(self) -> None:
        if self._result is None or not self._result.images:
            return
        index = min(self._shown_index, len(self._result.images) - 1)
        seeds = list(self._result.seeds or [])
        seed = seeds[index] if index < len(seeds) else None
        start = _outputs_dir() / saving.suggested_name(self._result.recipe.get("prompt", ""), seed)
        if self._result.recipe.get("job") == "upscale":
            start = _outputs_dir() / upscaled_name(self._result.recipe)
        path, _ = QFileDialog.getSaveFileName(self, "Save image as", str(start), "PNG image (*.png)")
        if not path:
            return
        source = self._result.recipe.get("input") if self._result.recipe.get("job") == "upscale" else None
        if source and outputs.same_file(source, saving.png_path(Path(path))):
            answer = self.ask("Replace the original image?",
                              f"{Path(path).name} is the image that was upscaled. Saving here replaces the "
                              "original with the upscaled image; the original cannot be recovered.")
            if answer != QMessageBox.StandardButton.Yes:
                self.statusBar().showMessage("Not saved: the original was left as it was")
                return
        image = self._result.images[index]
        try:
            saved = saving.save_png(image, Path(path), self._result.recipe, seed)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            self.message_area.show_message("Could not save the image",
                                           f"{reason}. The image is still here; try another folder.")
            self.statusBar().showMessage("Save failed")
            return
        self._unsaved = [(kept, kept_seed) for kept, kept_seed in self._unsaved if kept is not image]
        if not self._unsaved and self._hold_queue:
            self._hold_queue = False
            QTimer.singleShot(0, self._start_next)
        self.statusBar().showMessage(f"Saved {saved}")

    def ask(self, title: str, text: str) -> QMessageBox.StandardButton:
        """A yes/no question, No by default (tests replace this)."""
        buttons = QMessageBox.StandardButton
        return QMessageBox.question(self, title, text, buttons.Yes | buttons.No, buttons.No)

    @Slot()
    def show_about(self) -> None:
        if self._about is None:
            self._about = AboutDialog(self)
        self._about.show()
        self._about.raise_()

    def warm_up(self) -> None:
        """Load torch and the engine in the worker thread, after the window is on screen."""
        self.worker.warm_up()

    @Slot(int)
    def show_image(self, index: int) -> None:
        if not (0 <= index < len(self._images)):
            return
        self._shown_index = index
        seeds = list(self._result.seeds or []) if self._result else []
        image = self._images[index]
        caption = f"{image.width()}×{image.height()}"
        if index < len(seeds):
            caption += f" · seed {seeds[index]}"
        if len(self._images) > 1:
            caption += f" · image {index + 1} of {len(self._images)}"
        self.canvas.set_image(image, caption)

    def is_running(self) -> bool:
        return self._running

    # ---- worker signals --------------------------------------------------------------------------

    @Slot(str, str)
    def _on_stage(self, stage: str, detail: str) -> None:
        if not self._running:
            return
        self._last_stage = stage  # names the progress that follows: steps, tiles, hires steps
        self.stage_strip.set_stage(stage)
        if stage == "text":
            self.stage_strip.set_tokens(parse_tokens(detail))
        if self._cancelling:
            return
        label = STAGE_LABELS.get(stage, stage.capitalize())
        if stage != "denoise":
            self.step_label.setText(f"{label}…")
        self.statusBar().showMessage(f"{label}: {detail}" if detail and stage != "text" else f"{label}…")

    @Slot(int, int, object, float)
    def _on_progress(self, step: int, total: int, preview, elapsed: float) -> None:
        if not self._running:
            return
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(step)
        if self._cancelling:
            return
        if step == 1 or self._first_step is None:
            self._first_step = (step, elapsed)  # the rate is measured from here: loading is not a step
        noun = {"upscale": "Tile", "hires": "Hires step"}.get(getattr(self, "_last_stage", ""), "Step")
        text = f"{noun} {step}/{total} · {elapsed:.1f} s"
        first_step, first_elapsed = self._first_step
        if first_step < step < total:
            left = (elapsed - first_elapsed) / (step - first_step) * (total - step)
            text += f" · about {left:.0f} s left" if left >= 1 else " · less than a second left"
        self.step_label.setText(text)
        if preview is not None:
            self.canvas.set_image(pil_to_qimage(preview), f"preview · step {step}/{total}")
        self.frame_shown.emit(step, total)

    @Slot(object)
    def _on_finished(self, finished) -> None:
        self._set_running(False)
        self._result = finished
        self._images = [pil_to_qimage(image) for image in finished.images]
        self.stage_strip.finish()
        recipe = finished.recipe or {}
        timings = finished.timings or recipe.get("timings") or {}
        total = timings.get("total")
        seeds = list(finished.seeds or [])
        if seeds and self.form.random_check.isChecked():
            self.form.show_used_seed(seeds[0])
        self.thumbnails.setVisible(len(self._images) > 1)
        if len(self._images) > 1:
            self.thumbnails.set_images(self._images, [f"seed {seed}" for seed in seeds])
        self.show_image(0)
        self.progress_bar.setValue(self.progress_bar.maximum())
        self.device_label.setText(f"Device: {recipe.get('device', '?')} ({recipe.get('dtype', '?')})")
        self.device_label.setToolTip("")
        model_name = recipe.get("model_name") or model_info.display_name(str(recipe.get("model", "")))
        self.model_label.setText(f"Model: {model_name}")
        self.time_label.setText(f"Last run: {total:.1f} s" if isinstance(total, (int, float)) else "")
        seed_text = ", ".join(str(seed) for seed in seeds)
        done = f"Done in {total:.1f} s" if isinstance(total, (int, float)) else "Done"
        self.step_label.setText(done)
        status = f"{done} · seed {seed_text}" if seed_text else done
        notices = recipe.get("notices") or []  # memory fallbacks used, a VAE decode redone in float32
        self.statusBar().showMessage(" · ".join([status, *notices]))
        self.save_action.setEnabled(bool(self._images))
        self._keep_outputs(finished)
        self.run_ended.emit("finished")

    @Slot(str, str)
    def _on_failed(self, kind: str, message: str) -> None:
        self._set_running(False)
        self.stage_strip.fail()
        self.step_label.setText("Stopped")
        if kind == "bad_input":
            field = message.split(":", 1)[0].strip() if ":" in message else ""
            self._show_bad_input(message, field)
        else:
            title = FAILURE_TITLES.get(kind, "Error")
            self.message_area.show_message(title, message)
            self.statusBar().showMessage(f"{title}: {message}")
        self.run_ended.emit("failed")

    @Slot()
    def _on_cancelled(self) -> None:
        step, total = self.progress_bar.value(), self.progress_bar.maximum()
        self._set_running(False)
        self.stage_strip.fail()
        self.step_label.setText(f"Cancelled at step {step}/{total}" if step else "Cancelled")
        self.statusBar().showMessage("Cancelled")
        self.run_ended.emit("cancelled")

    @Slot(bool, str)
    def _on_warmed(self, ok: bool, text: str) -> None:
        if ok:
            if text:
                self.device_label.setText(f"Device: {text}")
                self.device_label.setToolTip("")
        else:
            self.device_label.setText("Device: not available")
            self.device_label.setToolTip(text)
            self.message_area.show_message("The engine could not start", text)

    @Slot(str)
    def _on_model_changed(self, model: str) -> None:
        self.model_label.setText(f"Model: {model_info.display_name(model)}")
        folder = model_info.model_dir(model)
        if not model_info.looks_like_model_folder(folder):
            what = ("The embedded default model is not installed" if model == "default"
                    else "Not a model folder")
            self.model_label.setToolTip(f"{what}: {folder}")
        else:
            self.model_label.setToolTip(str(folder))

    # ---- upscaling an image: a job of its own ------------------------------------------------------

    @Slot()
    def choose_image_to_upscale(self) -> None:
        if self._running:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Upscale an image", str(_outputs_dir()), IMAGE_FILTER)
        if path:
            self.upscale_file(path)

    def upscale_file(self, path, model: str = "default", scale: float | None = None) -> bool:
        """Upscale an image file in the upscale worker's thread, tile by tile; the result shows on the canvas
        and File → Save As… saves it. "default" is the form's model's upscaler, else the embedded one."""
        if self._running:
            self.statusBar().showMessage("Busy: upscale the image when the current run has finished")
            return False
        if not self._may_replace_unsaved():
            return False
        worker = self._ensure_upscale_worker()
        folder = model_info.model_dir(self.form.model())
        self.message_area.hide()
        self._first_step = None
        self._set_running(True)
        self.stage_strip.reset_upscale_only()
        self.thumbnails.hide()
        self.progress_bar.setRange(0, 1)
        self.progress_bar.setValue(0)
        self.step_label.setText("Starting…")
        self.time_label.setText("")
        self.statusBar().showMessage(f"Upscaling {Path(path).name}…")
        worker.submit(UpscaleJob(source=str(path), model=model, scale=scale, model_folder=str(folder)))
        return True

    def _ensure_upscale_worker(self) -> UpscaleWorker:
        if self._upscale_worker is None:
            worker = UpscaleWorker(device=self.worker.device, engine_factory=self.worker._engine_factory)
            thread = WorkerThread("upscale-worker")
            worker.moveToThread(thread)
            worker.stage.connect(self._on_stage)
            worker.progress.connect(self._on_progress)
            worker.finished.connect(self._on_upscale_finished)
            worker.failed.connect(self._on_failed)
            worker.cancelled.connect(self._on_cancelled)
            thread.start()
            self._upscale_worker, self._upscale_thread = worker, thread
        return self._upscale_worker

    @Slot(object)
    def _on_upscale_finished(self, finished) -> None:
        self._set_running(False)
        self._result = finished
        self._images = [pil_to_qimage(image) for image in finished.images]
        self._shown_index = 0
        self.stage_strip.finish()
        recipe = finished.recipe or {}
        image = self._images[0]
        source = Path(str(recipe.get("input") or "the image")).name
        upscaler = (recipe.get("upscaler") or {}).get("name", "?")
        scale = recipe.get("scale", 0)
        self.canvas.set_image(image, f"{image.width()}×{image.height()} · {source} upscaled {scale:g}x")
        self.progress_bar.setValue(self.progress_bar.maximum())
        total = (finished.timings or {}).get("total")
        done = f"Upscaled in {total:.1f} s" if isinstance(total, (int, float)) else "Upscaled"
        self.step_label.setText(done)
        self.time_label.setText(f"Last run: {total:.1f} s" if isinstance(total, (int, float)) else "")
        self.statusBar().showMessage(f"{done}: {source} to {image.width()}×{image.height()} with {upscaler} · "
                                     "File → Save As… keeps it")
        self.save_action.setEnabled(True)
        self.run_ended.emit("finished")

    # ---- the studio: outputs kept, history, queue, settings, drops ----------------------------------

    def _init_studio(self) -> None:
        self._queue: list = []  # requests waiting; the running one is self._request
        self._unsaved: list = []  # (image, seed) that could not be kept: Save As still has them
        self._hold_queue = False  # True while an image exists only in memory (the next run would drop it)
        # damaged state never stops the window: each problem falls back and is told once
        self._settings, notice = app_settings.load()
        self.history, history_notice = _open_history()
        try:
            self._recovered = self.history.recover([self.output_dir()])
        except outputs.HISTORY_ERRORS:
            self._recovered = {}

        self.queue_panel = QueuePanel()
        self.queue_panel.remove_requested.connect(self.remove_queued)
        self.queue_panel.clear_requested.connect(self.clear_queue)
        self.left_panel.layout().insertWidget(1, self.queue_panel)
        self.run_ended.connect(lambda _how: QTimer.singleShot(0, self._start_next))  # the next always runs

        self.gallery = GalleryPanel(self.history, folder_of=self.output_dir)
        self.gallery.recipe_chosen.connect(lambda entry: self.use_recipe(entry.params, str(entry.path)))
        self.gallery.image_chosen.connect(self._show_history_image)
        self.gallery_dock = QDockWidget("Gallery", self)
        self.gallery_dock.setObjectName("gallery_dock")
        self.gallery_dock.setWidget(self.gallery)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.gallery_dock)
        self._build_studio_actions()
        self.timeline_bar = TimelineBar.attach(self)  # the denoising frames of the last run, scrubbable
        self.models_panel = ModelsPanel.attach(self)  # the model library; "Use" sets the form's model
        self.training_panel = TrainingPanel.attach(self)  # LoRA fine-tuning, in a process of its own

        self.setAcceptDrops(True)
        problem = self._apply_settings()
        notice = " ".join(text for text in (notice, problem) if text) or None
        if notice and history_notice:
            self.message_area.show_message("Settings and history were reset", f"{notice} {history_notice}")
            self.statusBar().showMessage("Settings and history were reset: see the message above")
        elif history_notice:
            self.message_area.show_message("History was reset", history_notice)
            self.statusBar().showMessage("The history was reset: see the message above")
        elif notice:
            self.message_area.show_message("Settings were reset", notice)
            self.statusBar().showMessage("Settings were reset to defaults")
        if notice:  # told once: the broken file is gone now, and the next start is quiet
            self._save_settings()

    def _build_studio_actions(self) -> None:
        file_menu = self.menuBar().actions()[0].menu()
        quit_action = next((a for a in file_menu.actions() if a.text() == "&Quit"), None)
        self.open_folder_action = QAction("Open &Output Folder", self)
        self.open_folder_action.setShortcut(QKeySequence("Ctrl+Shift+O"))
        self.open_folder_action.triggered.connect(lambda: GalleryPanel.opener(self.output_dir()))
        self.choose_folder_action = QAction("Choose Output &Folder…", self)
        self.choose_folder_action.triggered.connect(self.choose_output_dir)
        for action in (self.open_folder_action, self.choose_folder_action):
            file_menu.insertAction(quit_action, action)
        file_menu.insertSeparator(quit_action)

        view_menu = self.menuBar().addMenu("&View")
        self.gallery_action = self.gallery_dock.toggleViewAction()
        self.gallery_action.setText("&Gallery")
        self.gallery_action.setShortcut(QKeySequence("Ctrl+H"))
        view_menu.addAction(self.gallery_action)
        theme_menu = view_menu.addMenu("&Theme")
        self.theme_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        for name, label in (("system", "Follow the &System"), ("dark", "&Dark"), ("light", "&Light")):
            action = QAction(label, self, checkable=True)
            action.triggered.connect(lambda _=False, name=name: self.set_theme(name))
            group.addAction(action)
            theme_menu.addAction(action)
            self.theme_actions[name] = action
        # the View menu goes before Help
        help_action = next((a for a in self.menuBar().actions() if a.text() == "&Help"), None)
        if help_action is not None:
            self.menuBar().insertMenu(help_action, view_menu)
        for action in (self.generate_action, self.cancel_action, self.save_action, self.open_folder_action,
                       self.gallery_action):
            shortcut = action.shortcut().toString(QKeySequence.SequenceFormat.NativeText)
            if shortcut:
                action.setToolTip(f"{action.text().replace('&', '').rstrip('…')} ({shortcut})")

    def output_dir(self) -> Path:
        return outputs.output_dir(self._settings.get("output_dir"))

    @Slot()
    def choose_output_dir(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder for generated images", str(self.output_dir()))
        if folder:
            self._settings["output_dir"] = folder
            self._save_settings()
            self.statusBar().showMessage(f"New images go to {folder}")

    def set_theme(self, name: str) -> None:
        self._settings["theme"] = name if name in app_settings.THEMES else "system"
        if name in self.theme_actions:
            self.theme_actions[name].setChecked(True)
        app = QApplication.instance()
        if app is not None:
            theme.apply_theme(app, self._settings["theme"])

    def _keep_outputs(self, finished) -> None:
        """Every image into the output folder with its recipe, then into the history. The image comes first:
        a history failure is a warning (a damaged database is moved aside). An image that cannot be written
        (full disk, unwritable folder) stays here for Save As, and a copy goes to the fallback folder
        (``<user folder>/unsaved``) when that can be written; if not, the queue waits for Save As."""
        folder = self.output_dir()
        kept, fallback, self._unsaved = [], [], []
        seeds = list(finished.seeds or [])
        recipe = finished.recipe or {}
        error, history_errors = None, []
        for index, image in enumerate(finished.images):
            seed = seeds[index] if index < len(seeds) else None
            history = None if history_errors else self.history
            try:
                kept.append(outputs.keep_image(image, recipe, seed, folder, history, history_errors))
                continue
            except Exception as exc:  # noqa: BLE001 - OSError above all; nothing may stop the run ending
                error = exc
                self._unsaved.append((image, seed))
            try:
                fallback.append(outputs.keep_elsewhere(image, recipe, seed, saving.timestamped_name(seed)))
            except OSError:
                pass
        self.kept_files = kept
        self.fallback_files = fallback
        if error is not None:
            reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
            count = len(self._unsaved)
            title = "Could not keep the image" if count == 1 else f"Could not keep {count} images"
            if len(fallback) == count:
                where = ", ".join(sorted({str(path.parent) for path in fallback}))
                text = (f"{reason} while saving into {folder}. Nothing was lost: a copy was written to {where}, "
                        "and the image is still here: File → Save As… (Ctrl+S) saves it elsewhere. Choose "
                        "another output folder for the next images.")
            else:
                self._hold_queue = True
                text = (f"{reason} while saving into {folder}. Nothing was lost: the image is still here. "
                        "Use File → Save As… (Ctrl+S) to save it elsewhere, or choose another output folder."
                        + (" The queue waits until then." if self._queue else ""))
            self.message_area.show_message(title, text)
            self.statusBar().showMessage(f"Not saved: {reason}")
        elif kept:
            self.statusBar().showMessage(f"{self.statusBar().currentMessage()} · saved to {folder}")
        if history_errors:
            self._history_failed(history_errors[0])
        if kept:
            self.gallery.refresh()

    def _history_failed(self, exc: BaseException) -> None:
        """The history failed while keeping images (they are saved): a damaged database is moved aside and a
        new one started; anything else (locked, read-only) is a warning."""
        reason = " ".join((getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).split())
        if history_db.is_damaged(exc) and str(self.history.path) != history_db.MEMORY:
            path = self.history.path
            self.history.close()
            try:
                aside = history_db.move_aside(path)
                self.history = History(path)
                notice = history_db.damaged_notice(reason, aside)
            except (sqlite3.Error, OSError, ValueError) as again:
                self.history = History(history_db.MEMORY)
                notice = f"The history database is damaged ({reason}) and could not be replaced ({again})."
            self.gallery.history = self.history
            self.message_area.show_message("History was reset", f"{notice} The images were saved.")
        self.statusBar().showMessage(f"{self.statusBar().currentMessage()} · history not updated: {reason}")

    def _remember(self, request) -> None:
        values = request.to_dict()
        values.pop("preview", None)
        self._settings["last_request"] = values
        self._settings["runs"] = self.form.runs_spin.value()
        self._save_settings()

    def _apply_settings(self) -> str | None:
        """Put the stored settings into the window; a value that cannot be used is dropped (never a failed
        start). Returns a sentence naming what was dropped, or None."""
        data = self._settings
        dropped = []
        steps = (("last_request", lambda value: self.form.apply_request(value) if isinstance(value, dict)
                  else None),
                 ("runs", lambda value: self.form.runs_spin.setValue(value) if isinstance(value, int) else None),
                 ("geometry", lambda value: self.restoreGeometry(QByteArray.fromBase64(value.encode("ascii")))
                  if isinstance(value, str) else None),
                 ("window_state", lambda value: self.restoreState(QByteArray.fromBase64(value.encode("ascii")))
                  if isinstance(value, str) else None))
        for key, apply in steps:
            try:
                apply(data.get(key))
            except Exception:  # noqa: BLE001 - a stored value must never stop the window from starting
                data[key] = app_settings.DEFAULTS.get(key)
                dropped.append(key)
        self.set_theme(data.get("theme", "system"))
        if dropped:
            return f"Stored settings that could not be used were reset: {', '.join(dropped)}."
        return None

    def _save_settings(self) -> None:
        self._settings["geometry"] = bytes(self.saveGeometry().toBase64()).decode("ascii")
        self._settings["window_state"] = bytes(self.saveState().toBase64()).decode("ascii")
        try:
            app_settings.save(self._settings)
        except OSError as exc:
            self.statusBar().showMessage(f"Settings not saved: {exc.strerror or exc}")

    # the queue

    @Slot(int)
    def remove_queued(self, row: int) -> None:
        if 0 <= row < len(self._queue):
            del self._queue[row]
            self.queue_panel.set_jobs(self._queue)

    @Slot()
    def clear_queue(self) -> None:
        self._queue.clear()
        self.queue_panel.set_jobs(self._queue)

    def queued(self) -> list:
        return list(self._queue)

    # recipes from images

    def use_recipe(self, values: dict, source: str = "") -> None:
        """Fill the form from a recipe (our JSON recipe dict, or request fields)."""
        fields = saving.request_fields(values) if "seeds" in values or "format" in values else dict(values)
        skipped = self.form.apply_request(fields)
        where = f" from {Path(source).name}" if source else ""
        note = f" ({', '.join(skipped)} not available here)" if skipped else ""
        self.statusBar().showMessage(f"Recipe loaded{where}{note}")

    def load_recipe_from(self, path: Path) -> bool:
        try:  # bounded and raising only NoRecipe (png_recipe); the broad catch keeps a drop from ever
            found = saving.read_recipe(path)  # breaking the window should a reader still have a bug
        except saving.NoRecipe as exc:
            self.message_area.show_message("No recipe in that file", str(exc))
            self.statusBar().showMessage("No recipe found")
            return False
        except Exception as exc:  # noqa: BLE001 - see above
            self.message_area.show_message("No recipe in that file",
                                           f"{path.name}: the recipe could not be read ({type(exc).__name__})")
            self.statusBar().showMessage("No recipe found")
            return False
        self.message_area.hide()
        self.use_recipe(found["request"], str(path))
        return True

    def _show_history_image(self, entry) -> None:
        if entry.missing:
            self.statusBar().showMessage(f"Missing: {entry.path} was moved or deleted")
            return
        from PySide6.QtGui import QImage

        image = QImage(str(entry.path))
        if not image.isNull():
            self.canvas.set_image(image, f"{image.width()}×{image.height()} · seed {entry.seed}")

    def dragEnterEvent(self, event) -> None:
        if _dropped_file(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        path = _dropped_file(event.mimeData())
        if path is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.load_recipe_from(path)

    # ---- helpers -------------------------------------------------------------------------------

    def _show_bad_input(self, message: str, field: str) -> None:
        label = self.form.field_label(field) if field else ""
        text = message
        if field and message.startswith(f"{field}:"):
            text = f"{label}: {message[len(field) + 1:].strip()}"
        self.form.mark_field(field)
        self.message_area.show_message(FAILURE_TITLES["bad_input"], text)
        self.statusBar().showMessage(f"{FAILURE_TITLES['bad_input']}: {text}")

    def _set_running(self, running: bool) -> None:
        self._running = running
        self._cancelling = False
        # while a job runs, Generate adds to the queue
        self.generate_button.setText("Add to queue" if running else "Generate")
        self.generate_button.setToolTip("Add to the queue (Ctrl+Enter)" if running else "Generate (Ctrl+Enter)")
        self.cancel_button.setEnabled(running)
        self.cancel_action.setEnabled(running)
        self.upscale_action.setEnabled(not running)

    @Slot()
    def shutdown(self) -> None:
        """Cancel a running generation and wait for the worker thread to end. Safe to call twice.

        Call it (or close()) before dropping the window: a QThread destroyed while running aborts the process.
        """
        if getattr(self, "training_panel", None) is not None:
            self.training_panel.shutdown()  # a running training saves its state and stops
        if self._thread.isRunning():
            self.worker.cancel()
            self._thread.quit()
            self._thread.wait()
        if self._upscale_worker is not None and self._upscale_thread.isRunning():
            self._upscale_worker.cancel()
            self._upscale_thread.quit()
            self._upscale_thread.wait()

    def closeEvent(self, event) -> None:
        self._queue.clear()
        self.shutdown()
        self._save_settings()
        self.history.close()
        if self._about is not None:
            self._about.close()
        super().closeEvent(event)


def _open_history() -> tuple[History, str | None]:
    """The history, checked; a damaged one is moved aside (with a notice). When none can be opened at all
    (a read-only user folder, a locked database), one in memory: images are still saved, not listed later."""
    try:
        return History.open_checked()
    except (sqlite3.Error, OSError, ValueError) as exc:
        reason = " ".join((getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).split())
        return History(history_db.MEMORY), (
            f"The history could not be opened ({reason}). New images are still saved in the output folder, "
            "but the gallery forgets them when the window closes.")


def _outputs_dir() -> Path:
    try:
        from desktop_app import paths

        finder = getattr(paths, "outputs_dir", None)
        if callable(finder):
            folder = Path(finder())
            folder.mkdir(parents=True, exist_ok=True)
            return folder
    except (ImportError, OSError):
        pass
    return Path.home()


IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff *.gif);;All files (*)"


def upscaled_name(recipe: dict) -> str:
    """photo.jpg upscaled 4x -> photo-x4.png"""
    stem = Path(str(recipe.get("input") or "image")).stem or "image"
    return f"{stem}-x{recipe.get('scale', 4):g}.png"


def runs_of(request, runs: int) -> list:
    """``runs`` jobs for the queue. With a fixed seed, run k starts at seed + k × batch size, so every image
    has its own seed; with a random seed each run draws its own."""
    if runs <= 1 or request.seed is None:
        return [request] * max(1, runs)
    from desktop_app.engine.request import MAX_SEED

    return [request.with_seed((request.seed + k * request.batch_size) % (MAX_SEED + 1)) for k in range(runs)]


def _dropped_file(mime) -> Path | None:
    """The first local image file among dropped URLs."""
    if mime is None or not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            if path.suffix.lower() in (".png", ".jpg", ".jpeg", ".webp") and path.is_file():
                return path
    return None

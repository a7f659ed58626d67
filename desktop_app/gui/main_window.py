"""The main window: the form on the left; the stage strip, canvas and progress on the right; status bar below.

The window never touches torch. It builds a GenerationRequest from the form, hands it to the
GenerationWorker in its thread, and draws what the worker's signals report.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.engine.errors import RequestError

from . import model_info
from .. import png_recipe as saving
from .about_dialog import APP_NAME, AboutDialog
from .canvas import ImageCanvas
from .generation_form import GenerationForm
from .images import pil_to_qimage
from .stage_strip import STAGES, StageStrip, parse_tokens
from .thumbnails import ThumbnailStrip
from .workers import GenerationWorker, WorkerThread

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
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        about_action = QAction("&About", self)
        about_action.triggered.connect(self.show_about)

        menus = self.menuBar()
        file_menu = menus.addMenu("&File")
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
        if self._running:
            return
        self.message_area.hide()
        self.form.clear_marks()
        try:
            request = self.form.build_request()
        except RequestError as exc:
            self._show_bad_input(str(exc), exc.field)
            return
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
        path, _ = QFileDialog.getSaveFileName(self, "Save image as", str(start), "PNG image (*.png)")
        if not path:
            return
        try:
            saved = saving.save_png(self._result.images[index], Path(path), self._result.recipe, seed)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            self.message_area.show_message("Could not save the image",
                                           f"{reason}. The image is still here; try another folder.")
            self.statusBar().showMessage("Save failed")
            return
        self.statusBar().showMessage(f"Saved {saved}")

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
        text = f"Step {step}/{total} · {elapsed:.1f} s"
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
        self.statusBar().showMessage(f"{done} · seed {seed_text}" if seed_text else done)
        self.save_action.setEnabled(bool(self._images))
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
        self.generate_button.setEnabled(not running)
        self.generate_action.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.cancel_action.setEnabled(running)

    @Slot()
    def shutdown(self) -> None:
        """Cancel a running generation and wait for the worker thread to end. Safe to call twice.

        Call it (or close()) before dropping the window: a QThread destroyed while running aborts the process.
        """
        if self._thread.isRunning():
            self.worker.cancel()
            self._thread.quit()
            self._thread.wait()

    def closeEvent(self, event) -> None:
        self.shutdown()
        if self._about is not None:
            self._about.close()
        super().closeEvent(event)


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

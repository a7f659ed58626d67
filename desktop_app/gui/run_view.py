"""The right side of the window: the stage strip, a message area, the canvas, the thumbnails of a batch and the
progress row. A view of one run: the window calls it with what the run controller reports, and it says what
the status bar should read through ``status``. No run state lives here beyond the images on show."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QToolButton, QVBoxLayout, QWidget

from desktop_app.engine.request import UpscaleRequest
from desktop_app.gui.canvas import ImageCanvas
from desktop_app.gui.images import pil_to_qimage
from desktop_app.gui.stage_strip import STAGES, StageStrip, parse_tokens
from desktop_app.gui.thumbnails import ThumbnailStrip

STAGE_LABELS = {name: label for name, label, _ in STAGES} | {"load": "Loading model", "save": "Saving"}
PROGRESS_NOUNS = {"upscale": "Tile", "hires": "Hires step"}  # a Progress's stage names what it counts


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

    @Slot(str, str)
    def show_message(self, title: str, text: str) -> None:
        self.title.setText(title)
        self.text.setText(text)
        self.show()


class RunView(QFrame):
    status = Signal(str)  # what the status bar should say now
    frame_shown = Signal(int, int)  # step, total: a progress update (and its preview, if any) is on screen

    def __init__(self, run=None, parent: QWidget | None = None):
        """``run``: the RunController whose reports this view shows (its signals are connected here, before
        the window's own)."""
        super().__init__(parent)
        self.setObjectName("viewer")
        self.images: list = []  # the last result's images, as QImages
        self.seeds: list = []  # and their seeds
        self.shown_index = 0
        self._first_step: tuple[int, float] | None = None  # the rate is measured from here

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

        self.setStyleSheet(
            "QFrame#viewer { background: #1f2126; }"
            "QFrame#viewer QLabel#step_label { color: #d7dae0; }"
            "QFrame#viewer QProgressBar { background: #2a2d33; border: none; border-radius: 5px; }"
            "QFrame#viewer QProgressBar::chunk { background: #2f6fde; border-radius: 5px; }"
            "QFrame#viewer QListWidget { background: #1a1c20; color: #c9ccd2; border: 1px solid #2f3238; }")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 12, 14, 10)
        layout.setSpacing(8)
        layout.addWidget(self.stage_strip)
        layout.addWidget(self.message_area)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.thumbnails)
        layout.addLayout(progress_row)
        if run is not None:
            self._follow(run)

    def _follow(self, run) -> None:
        run.started.connect(self.start)
        run.stage.connect(lambda stage, detail: self.show_stage(stage, detail, run.cancelling_now))
        run.progress.connect(lambda *report: self.show_progress(*report, run.cancelling_now))
        run.cancelling.connect(self.show_cancelling)
        run.finished.connect(self.show_result)
        run.upscaled.connect(self.show_upscaled)
        run.failed.connect(lambda _kind, _message: self.show_failed())
        run.cancelled.connect(self.show_cancelled)
        run.notice.connect(self.message_area.show_message)

    def add_below_canvas(self, widget: QWidget) -> None:
        layout = self.layout()
        layout.insertWidget(layout.indexOf(self.canvas) + 1, widget)

    def add_above_canvas(self, widget: QWidget) -> None:
        layout = self.layout()
        layout.insertWidget(layout.indexOf(self.canvas), widget)

    # ---- a run -------------------------------------------------------------------------------------------

    @Slot(object)
    def start(self, request) -> None:
        """A run begins: a GenerationRequest, or an UpscaleRequest (an image file to enlarge)."""
        upscale_only = isinstance(request, UpscaleRequest)
        self.message_area.hide()
        self._first_step = None
        if upscale_only:
            self.stage_strip.reset_upscale_only()
        else:
            self.stage_strip.reset(upscale=request.upscale is not None)
        self.thumbnails.hide()
        self.progress_bar.setRange(0, 1 if upscale_only else request.steps)
        self.progress_bar.setValue(0)
        self.step_label.setText("Starting…")
        self.status.emit(f"Upscaling {Path(str(request.source)).name}…" if upscale_only else "Generating…")

    def show_stage(self, stage: str, detail: str, cancelling: bool) -> None:
        self.stage_strip.set_stage(stage)
        if stage == "text":
            self.stage_strip.set_tokens(parse_tokens(detail))
        if cancelling:
            return
        label = STAGE_LABELS.get(stage, stage.capitalize())
        if stage != "denoise":
            self.step_label.setText(f"{label}…")
        self.status.emit(f"{label}: {detail}" if detail and stage != "text" else f"{label}…")

    def show_progress(self, step: int, total: int, preview, elapsed: float, stage: str, cancelling: bool) -> None:
        self.progress_bar.setRange(0, max(1, total))
        self.progress_bar.setValue(step)
        if cancelling:
            return
        if step == 1 or self._first_step is None:
            self._first_step = (step, elapsed)  # loading is not a step
        text = f"{PROGRESS_NOUNS.get(stage, 'Step')} {step}/{total} · {elapsed:.1f} s"
        first_step, first_elapsed = self._first_step
        if first_step < step < total:
            left = (elapsed - first_elapsed) / (step - first_step) * (total - step)
            text += f" · about {left:.0f} s left" if left >= 1 else " · less than a second left"
        self.step_label.setText(text)
        if preview is not None:
            self.canvas.set_image(pil_to_qimage(preview), f"preview · step {step}/{total}")
        self.frame_shown.emit(step, total)

    @Slot()
    def show_cancelling(self) -> None:
        self.step_label.setText("Cancelling…")
        self.status.emit("Cancelling…")

    @Slot(object)
    def show_result(self, finished) -> None:
        """A generation's images: the first on the canvas, thumbnails for a batch."""
        self.images = [pil_to_qimage(image) for image in finished.images]
        self.seeds = list(finished.seeds or [])
        self.stage_strip.finish()
        self.thumbnails.setVisible(len(self.images) > 1)
        if len(self.images) > 1:
            self.thumbnails.set_images(self.images, [f"seed {seed}" for seed in self.seeds])
        self.show_image(0)
        self.progress_bar.setValue(self.progress_bar.maximum())

    @Slot(object)
    def show_upscaled(self, finished) -> None:
        """An upscale job's image on the canvas."""
        self.images = [pil_to_qimage(image) for image in finished.images]
        self.seeds = []
        self.shown_index = 0
        self.stage_strip.finish()
        recipe = finished.recipe
        image = self.images[0]
        source = Path(str(recipe.input or "the image")).name
        self.canvas.set_image(image, f"{image.width()}×{image.height()} · {source} upscaled {recipe.scale:g}x")
        self.progress_bar.setValue(self.progress_bar.maximum())
        total = (finished.timings or {}).get("total")
        done = f"Upscaled in {total:.1f} s" if isinstance(total, (int, float)) else "Upscaled"
        self.step_label.setText(done)
        self.status.emit(f"{done}: {source} to {image.width()}×{image.height()} with {recipe.upscaler_name} · "
                         "File → Save As… keeps it")

    @Slot()
    def show_failed(self) -> None:
        self.stage_strip.fail()
        self.step_label.setText("Stopped")

    @Slot()
    def show_cancelled(self) -> None:
        step, total = self.progress_bar.value(), self.progress_bar.maximum()
        self.stage_strip.fail()
        self.step_label.setText(f"Cancelled at step {step}/{total}" if step else "Cancelled")
        self.status.emit("Cancelled")

    @Slot(int)
    def show_image(self, index: int) -> None:
        if not (0 <= index < len(self.images)):
            return
        self.shown_index = index
        image = self.images[index]
        caption = f"{image.width()}×{image.height()}"
        if index < len(self.seeds):
            caption += f" · seed {self.seeds[index]}"
        if len(self.images) > 1:
            caption += f" · image {index + 1} of {len(self.images)}"
        self.canvas.set_image(image, caption)

"""The timeline bar under the canvas: scrub back through the denoising frames of the last generation and export
them as an animated WebP or GIF. The frames live in ``desktop_app.studio.timeline.Timeline`` (plain PIL).

``TimelineBar(worker, image_menu, folder_of)`` listens to the generation worker it is given (the window puts
the bar under its canvas and draws the frames it emits): a new run resets the bar, each preview adds a frame,
the result adds the final frame. While a run goes the slider follows the newest frame and cannot be dragged;
afterwards it scrubs, showing each frame on the canvas.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QAction, QImage, QKeySequence
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QMenu, QPushButton, QSlider, QWidget

from desktop_app.studio.timeline import Timeline, TimelineError
from desktop_app.gui.images import pil_to_qimage

EXPORT_FILTERS = {"Animated WebP (*.webp)": ".webp", "Animated GIF (*.gif)": ".gif"}


class TimelineBar(QWidget):
    """``worker``: the generation worker (its busy, progress, finished, cancelled and failed signals);
    ``image_menu``: where Export Timeline… goes (``export_action``); ``folder_of()``: the folder the export
    dialog starts in. Its intents: ``frame_shown`` (draw this frame), ``exported``, ``export_failed``."""

    frame_shown = Signal(object, str)  # QImage, caption: the frame the slider points at, to be drawn
    exported = Signal(str, int)  # path, frames in the file
    export_failed = Signal(str)  # why the export did not happen, one readable line

    def __init__(self, worker=None, image_menu: QMenu | None = None, folder_of=None,
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("timeline_bar")
        self.timeline = Timeline()
        self._qimages: dict[int, QImage] = {}
        self._running = False
        self._following = False  # True while the slider is moved by the code, not by the person
        self._seeds: list = []  # of the run the frames are from: the export's name
        self._folder_of = folder_of or Path.home

        title = QLabel("Timeline")
        title.setObjectName("timeline_title")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("timeline_slider")
        self.slider.setToolTip("Scrub back through the denoising steps of the last generation")
        self.slider.setRange(0, 0)
        self.slider.setPageStep(1)
        self.slider.valueChanged.connect(self._on_slider)
        self.step_label = QLabel("")
        self.step_label.setObjectName("timeline_step")
        self.step_label.setMinimumWidth(150)
        self.export_button = QPushButton("Export…")
        self.export_button.setObjectName("timeline_export")
        self.export_button.setToolTip("Save the timeline as an animated WebP or GIF (Ctrl+Shift+E)")
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(title)
        row.addWidget(self.slider, 1)
        row.addWidget(self.step_label)
        row.addWidget(self.export_button)
        self.setStyleSheet("QLabel { color: #d7dae0; }")

        self.export_action = QAction("Export &Timeline…", self)
        self.export_action.setShortcut(QKeySequence("Ctrl+Shift+E"))
        self.export_action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        self.export_action.setToolTip("Export the timeline as an animated WebP or GIF (Ctrl+Shift+E)")
        self.export_action.triggered.connect(self.export_interactively)
        self.export_button.clicked.connect(self.export_action.trigger)
        if image_menu is not None:
            image_menu.addSeparator()
            image_menu.addAction(self.export_action)
        if worker is not None:  # bound slots of the bar (not lambdas): Qt queues them into the UI thread
            worker.busy.connect(self.start)
            worker.progress.connect(self._on_progress)
            worker.finished.connect(self._on_finished)
            worker.cancelled.connect(self.stop)
            worker.failed.connect(self._on_failed)
        self._update_controls()

    # ---- the frames ----------------------------------------------------------------------------------

    @Slot()
    def start(self) -> None:
        """A new generation: the old timeline goes."""
        self.timeline.reset()
        self._qimages.clear()
        self._running = True
        self._update_controls()

    def add(self, step: int, total: int, preview) -> None:
        if not self.timeline.add(step, total, preview):
            return
        self._follow_last()

    def finish(self, image, total: int | None = None) -> None:
        self.timeline.finish(image, total)
        self._running = False
        self._follow_last()

    @Slot()
    def stop(self) -> None:
        """The run ended without a result (cancelled, failed): its frames so far can still be scrubbed."""
        self._running = False
        self._update_controls()

    def frame_count(self) -> int:
        return len(self.timeline)

    def show_frame(self, index: int) -> None:
        """Point the slider at frame ``index`` (as a drag would) and show it."""
        if self.slider.value() == index:
            self._on_slider(index)  # no change, no valueChanged: show it anyway
        else:
            self.slider.setValue(index)

    def frame_image(self, index: int) -> QImage:
        if index not in self._qimages:
            self._qimages[index] = pil_to_qimage(self.timeline.frames[index].image)
        return self._qimages[index]

    # ---- export --------------------------------------------------------------------------------------

    def export(self, path: Path | str) -> int:
        """Write the animation (format by extension); TimelineError says what went wrong."""
        count = self.timeline.write(path)
        self.exported.emit(str(path), count)
        return count

    @Slot()
    def export_interactively(self) -> None:
        """Ask where, then write the animation; ``exported`` or ``export_failed`` says how it went."""
        if not len(self) or self._running:
            return
        name = f"timeline-{self._seeds[0]}" if self._seeds else "timeline"
        path = self.ask_path(self.window(), self._folder_of(), name)
        if path is None:
            return
        try:
            self.export(path)
        except TimelineError as exc:
            self.export_failed.emit(str(exc))

    def ask_path(self, parent: QWidget, folder: Path, name: str = "timeline") -> Path | None:
        """The save dialog; a name without .webp/.gif gets the chosen type's extension."""
        start = str(Path(folder) / f"{name}.webp")
        path, chosen = QFileDialog.getSaveFileName(parent, "Export the timeline", start,
                                                   ";;".join(EXPORT_FILTERS))
        if not path:
            return None
        path = Path(path)
        if not path.suffix:
            path = path.with_suffix(EXPORT_FILTERS.get(chosen, ".webp"))
        return path

    # ---- helpers -------------------------------------------------------------------------------------

    @Slot(int, int, object, float, str)
    def _on_progress(self, step: int, total: int, preview, _elapsed: float, _stage: str) -> None:
        self.add(step, total, preview)

    @Slot(object)
    def _on_finished(self, done) -> None:
        self._seeds = list(done.seeds or [])
        last = self.timeline.frames[-1].total if len(self.timeline) else done.recipe.request.steps
        self.finish(done.images[0] if done.images else None, last)

    @Slot(str, str)
    def _on_failed(self, _kind: str, _message: str) -> None:
        self.stop()

    def _follow_last(self) -> None:
        self._following = True
        try:
            self.slider.setRange(0, max(0, len(self.timeline) - 1))
            self.slider.setValue(len(self.timeline) - 1)
        finally:
            self._following = False
        self._update_controls()

    @Slot(int)
    def _on_slider(self, index: int) -> None:
        if not 0 <= index < len(self.timeline):
            return
        frame = self.timeline.frames[index]
        self.step_label.setText(frame.label)
        if self._following or self._running:
            return  # the window draws live previews itself
        image = self.frame_image(index)
        self.frame_shown.emit(image, f"{image.width()}×{image.height()} · {frame.label}")

    def _update_controls(self) -> None:
        count = len(self.timeline)
        self.setVisible(count > 0)
        self.slider.setEnabled(count > 1 and not self._running)
        self.export_button.setEnabled(count > 0 and not self._running)
        self.export_action.setEnabled(self.export_button.isEnabled())
        if count == 0:
            self.step_label.setText("")
        else:
            self.step_label.setText(self.timeline.frames[self.slider.value()].label)

    def __len__(self) -> int:
        return len(self.timeline)

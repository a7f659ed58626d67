"""The timeline bar under the canvas: scrub back through the denoising frames of the last generation and export
them as an animated WebP or GIF. The frames live in ``desktop_app.studio.timeline.Timeline`` (plain PIL).

``TimelineBar.attach(window)`` puts the bar under the window's canvas and listens to its generation worker:
a new run resets the bar, each preview adds a frame, the result adds the final frame. While a run goes the
slider follows the newest frame and cannot be dragged; afterwards it scrubs, showing each frame on the canvas.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QAction, QImage, QKeySequence
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QPushButton, QSlider, QWidget

from desktop_app.studio.timeline import Timeline, TimelineError
from desktop_app.gui.images import pil_to_qimage

EXPORT_FILTERS = {"Animated WebP (*.webp)": ".webp", "Animated GIF (*.gif)": ".gif"}


class TimelineBar(QWidget):
    frame_shown = Signal(object, str)  # QImage, caption: the frame the slider points at, to be drawn
    exported = Signal(str, int)  # path, frames in the file

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("timeline_bar")
        self.timeline = Timeline()
        self._qimages: dict[int, QImage] = {}
        self._running = False
        self._following = False  # True while the slider is moved by the code, not by the person
        self._action: QAction | None = None  # the menu action, enabled with the export button

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

    @Slot(int, int, object, float)
    def _on_progress(self, step: int, total: int, preview, _elapsed: float) -> None:
        self.add(step, total, preview)

    @Slot(object)
    def _on_finished(self, done) -> None:
        last = self.timeline.frames[-1].total if len(self.timeline) else (done.recipe or {}).get("steps")
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
        if self._action is not None:
            self._action.setEnabled(self.export_button.isEnabled())
        if count == 0:
            self.step_label.setText("")
        else:
            self.step_label.setText(self.timeline.frames[self.slider.value()].label)

    # ---- wiring into the main window ----------------------------------------------------------------

    @classmethod
    def attach(cls, window) -> TimelineBar:
        """Put a bar under ``window.canvas`` and connect it to ``window.worker``; adds Image → Export
        Timeline… (``window.export_timeline_action``)."""
        bar = cls(window.viewer)
        layout = window.viewer.layout()
        layout.insertWidget(layout.indexOf(window.canvas) + 1, bar)
        worker = window.worker
        # bound slots of the bar (not lambdas): Qt queues them into the UI thread
        worker.busy.connect(bar.start)
        worker.progress.connect(bar._on_progress)
        worker.finished.connect(bar._on_finished)
        worker.cancelled.connect(bar.stop)
        worker.failed.connect(bar._on_failed)
        bar.frame_shown.connect(window.canvas.set_image)

        action = QAction("Export &Timeline…", window)
        action.setShortcut(QKeySequence("Ctrl+Shift+E"))
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setToolTip("Export the timeline as an animated WebP or GIF (Ctrl+Shift+E)")
        action.setEnabled(False)
        action.triggered.connect(lambda: _export_from(window, bar))
        bar.export_button.clicked.connect(action.trigger)
        image_menu = next((a.menu() for a in window.menuBar().actions() if a.text() == "&Image"), None)
        if image_menu is not None:
            image_menu.addSeparator()
            image_menu.addAction(action)
        else:
            window.addAction(action)
        window.export_timeline_action = action
        bar._action = action
        bar._update_controls()
        return bar

    def __len__(self) -> int:
        return len(self.timeline)


def _export_from(window, bar: TimelineBar) -> None:
    if not len(bar) or bar._running:
        return
    seeds = list(getattr(getattr(window, "_result", None), "seeds", None) or [])
    name = f"timeline-{seeds[0]}" if seeds else "timeline"
    path = bar.ask_path(window, window.output_dir(), name)
    if path is None:
        return
    try:
        count = bar.export(path)
    except TimelineError as exc:
        window.message_area.show_message("Could not export the timeline", str(exc))
        window.statusBar().showMessage("Timeline not exported")
        return
    window.statusBar().showMessage(f"Timeline exported: {path} ({count} frames)")

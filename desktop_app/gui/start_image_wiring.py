"""The window's side of image to image and inpainting (issue 17), wired in one place so that the window itself
stays a view: the form's start-image box, the menu actions (File > Open as Start Image…, Open Mask…, Image > Use
as Start Image), the mask tools above the canvas and the canvas's painting mode.

Painting: Paint mask shows the start image on the canvas with the mask over it and the tools above; Done, a run
starting or any other image shown on the canvas ends it (the mask stays and goes with the next Generate).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from PySide6.QtCore import QBuffer, QByteArray, QIODevice, QObject

from desktop_app.gui.mask_painter import work_dir
from desktop_app.gui.mask_tools import MaskTools

PAINT_CAPTION = "start image · paint what to repaint (the right button erases)"


class StartImageWiring(QObject):
    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.box = box = window.form.start_box
        self.canvas = canvas = window.canvas
        self.tools = MaskTools(box.layer)
        window.view.add_above_canvas(self.tools)
        self._history_image = None  # (the QImage the gallery put on the canvas, its file)
        menus, bar = window.menus, window.statusBar()

        box.paint_toggled.connect(self._paint)
        box.changed.connect(self._on_start_changed)
        box.notice.connect(bar.showMessage)
        box.canvas_requested.connect(self.use_canvas_image)
        canvas.mask_ended.connect(lambda: box.paint_button.setChecked(False))
        canvas.image_changed.connect(self._enable_use)
        self.tools.done.connect(lambda: box.paint_button.setChecked(False))
        self.tools.load_requested.connect(box.choose_mask)
        window.controller.started.connect(lambda _request: box.paint_button.setChecked(False))
        window.gallery.image_chosen.connect(self._on_history_image)
        menus.open_start_action.triggered.connect(lambda _=False: box.choose_file())
        menus.open_mask_action.triggered.connect(lambda _=False: self.open_mask())
        menus.use_start_action.triggered.connect(lambda _=False: self.use_canvas_image())
        self._enable_use()

    # ---- painting ------------------------------------------------------------------------------------

    def _paint(self, on: bool) -> None:
        if on and self.box.image() is not None:
            self.canvas.start_mask(self.box.image(), self.box.layer, PAINT_CAPTION)
            self.tools.refresh()
            self.tools.show()
            self.canvas.setFocus()
        else:
            self.canvas.stop_mask()
            self.tools.hide()
        self._enable_use()

    def _on_start_changed(self) -> None:
        if self.box.paint_button.isChecked():  # painting goes on over the new start image
            self._paint(self.box.image() is not None)

    def open_mask(self) -> None:
        if self.box.path() is None:
            self.window.statusBar().showMessage("Set a start image first (File → Open as Start Image…): the mask "
                                                "marks which part of it to repaint")
            return
        self.box.choose_mask()

    # ---- the image on the canvas as the start image ----------------------------------------------------

    def _enable_use(self) -> None:
        usable = self.canvas.image() is not None and not self.canvas.painting()
        self.window.menus.use_start_action.setEnabled(usable)

    def _on_history_image(self, entry) -> None:
        self._history_image = (self.canvas.image(), Path(entry.path))

    def canvas_image_file(self) -> Path | None:
        """The file of the image on the canvas: the last run's image as it was kept, the gallery's image, or
        else (a preview, a timeline frame, an image that could not be kept) a copy written into the work folder."""
        image = self.canvas.image()
        if image is None:
            return None
        view, kept = self.window.view, list(self.window.controller.kept_files)
        index = view.shown_index
        if index < len(view.images) and view.images[index] is image and len(kept) == len(view.images) \
                and kept[index].is_file():
            return kept[index]
        shown, file = self._history_image or (None, None)
        if shown is image and file.is_file():
            return file
        buffer = QBuffer()
        buffer.open(QIODevice.OpenModeFlag.WriteOnly)
        image.save(buffer, "PNG")
        data = bytes(QByteArray(buffer.data()))
        path = work_dir() / f"canvas-{hashlib.sha256(data).hexdigest()[:16]}.png"
        if not path.is_file():
            from desktop_app import paths

            paths.write_atomically(path, lambda handle: handle.write(data))
        return path

    def use_canvas_image(self) -> bool:
        if self.canvas.painting():
            return False
        try:
            path = self.canvas_image_file()
        except OSError as exc:
            self.window.statusBar().showMessage(f"Start image not set: the canvas image could not be written "
                                                f"({exc.strerror or exc})")
            return False
        if path is None:
            self.window.statusBar().showMessage("No image on the canvas to start from")
            return False
        return self.box.set_image(path)


def wire_start_image(window) -> StartImageWiring:
    return StartImageWiring(window)

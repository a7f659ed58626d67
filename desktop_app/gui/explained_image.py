"""Which image file an explain report is about, for its creation record (studio/creation_record.py): the image on
the window's canvas when it is a file the person has (the last run's image as it was kept, or one picked in the
gallery) and it was made from the prompt being explained. A preview, a timeline frame, an upscale not saved yet,
or an image of another prompt has no record to give: the report is written without one.

The canvas holds QImages, not files: each kept image and each gallery image is remembered with its file when it is
put on the canvas, and the canvas's image is looked up by identity, so a frame or an upscale shown since is never
taken for the file it came from.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QTimer


class ExplainedImage(QObject):
    """``file_for(request)``: the canvas image's file when it was made from ``request.prompt``, else None."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self._kept: list[tuple[object, Path]] = []  # the last run's images on the view, with their files
        self._gallery: tuple[object, Path] | None = None
        self._chosen: Path | None = None  # a gallery image about to be shown
        window.controller.kept.connect(self._on_kept)
        window.gallery.image_chosen.connect(self._on_chosen)
        window.canvas.image_changed.connect(self._on_canvas_changed)

    def _on_kept(self, files) -> None:
        images = list(self.window.view.images)
        files = [Path(file) for file in files]
        # a run whose images were not all kept cannot be paired by position: none is taken
        self._kept = list(zip(images, files)) if len(images) == len(files) else []

    def _on_chosen(self, entry) -> None:
        self._chosen = None if getattr(entry, "missing", False) else Path(entry.path)
        QTimer.singleShot(0, self, self._forget_chosen)  # not on the canvas by the next turn: an unreadable file

    def _forget_chosen(self) -> None:
        self._chosen = None

    def _on_canvas_changed(self) -> None:
        if self._chosen is not None:  # the gallery's image has just been put on the canvas
            self._gallery, self._chosen = (self.window.canvas.image(), self._chosen), None

    def canvas_file(self) -> Path | None:
        """The file of the image on the canvas, when it is one the person has; else None."""
        image = self.window.canvas.image()
        if image is None:
            return None
        pairs = [*self._kept, *([self._gallery] if self._gallery else [])]
        return next((file for shown, file in pairs if shown is image and file.is_file()), None)

    def file_for(self, request) -> Path | None:
        """The canvas image's file when its recipe's prompt is ``request``'s (the image the report explains)."""
        from desktop_app.studio.png_recipe import NoRecipe, read_recipe

        file = self.canvas_file()
        if file is None:
            return None
        try:
            prompt = read_recipe(file)["request"].get("prompt")
        except NoRecipe:
            return None
        wanted = getattr(request, "prompt", None)
        return file if isinstance(prompt, str) and prompt.strip() == str(wanted or "").strip() else None

"""The window's side of edit models (issue 17): Image → Edit with an Instruction… changes the image on the canvas
(else the start image) by an instruction with an edit model (FLUX.1 Kontext, Qwen-Image-Edit, FLUX.2 [klein]).

The action asks in a short dialog (edit_dialog.py), checks everything it can before any weights load (the
instruction, the image, whether the model can edit: one line when not), writes the canvas image to a PNG when it is
in no file, and hands an EditRequest to the run controller, which runs it in the generation worker's thread and
keeps the result like a generation's (the output folder with its recipe, the history). Here the run is drawn: the
progress row, the stage strip, the result on the canvas. Esc cancels it like any run.
"""

from __future__ import annotations

import secrets
from dataclasses import replace
from pathlib import Path

from PySide6.QtCore import QObject

from desktop_app.errors import ModelError, RequestError, printable
from desktop_app.gui.edit_dialog import EditDialog, edit_model_choices
from desktop_app.gui.images import pil_to_qimage

FIELD_LABELS = {"image": "Image", "instruction": "Instruction", "model": "Edit model", "seed": "Seed",
                "steps": "Steps", "guidance_scale": "Guidance"}


class EditWiring(QObject):
    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.action = window.menus.edit_action
        self.dialog: EditDialog | None = None  # the open dialog (tests reach it here)
        self._last: tuple[str, str] = ("", "")  # the instruction and model of the last edit, offered again
        run = window.controller
        self.action.triggered.connect(lambda _=False: self.open_dialog())
        window.canvas.image_changed.connect(self._enable)
        window.form.start_box.changed.connect(self._enable)
        run.running_changed.connect(lambda _running: self._enable())
        run.edit_started.connect(self._on_started)
        run.edited.connect(self._on_edited)
        self._enable()

    # ---- asking --------------------------------------------------------------------------------------

    def _enable(self) -> None:
        has_image = self.window.canvas.image() is not None or self.window.form.start_box.path() is not None
        self.action.setEnabled(has_image and not self.window.controller.running)

    def _source(self) -> str:
        """What the person is told is edited."""
        image = self.window.canvas.image()
        if image is not None and not self.window.canvas.painting():
            return f"the image on the canvas ({image.width()}×{image.height()})"
        path = self.window.form.start_box.path()
        return f"the start image {Path(path).name}" if path is not None else "the image on the canvas"

    def open_dialog(self) -> EditDialog | None:
        """The dialog (window-modal, not blocking): its Edit starts the edit, or says in one line why not."""
        if self.window.controller.running:
            self.window.statusBar().showMessage("Busy: edit the image when the current run has finished")
            return None
        if self.dialog is not None:
            self.dialog.close()
        self.dialog = EditDialog(self.window, self._source(), edit_model_choices(self.window.form.model()))
        instruction, model = self._last
        self.dialog.instruction_edit.setText(instruction)
        self.dialog.instruction_edit.selectAll()
        if model:
            self.dialog.select_model(model)
        self.dialog.submitted.connect(self._on_submitted)
        self.dialog.open()
        return self.dialog

    def _on_submitted(self, instruction: str, model: str) -> None:
        refused = self.start(instruction, model)
        if refused is None:
            self._last = (instruction, model)
            self.dialog.accept()
        else:
            self.dialog.refuse(refused)

    # ---- starting --------------------------------------------------------------------------------------

    def image_file(self) -> Path | None:
        """The file to edit: the canvas image's (written into the work folder when it is in no file), or the
        start image's while a mask is painted over it or when the canvas is empty. OSError when the canvas image
        cannot be written."""
        window = self.window
        start = window.form.start_box.path()
        if window.canvas.image() is None or (window.canvas.painting() and start is not None):
            return start
        return window.start_image.canvas_image_file()

    def start(self, instruction: str, model: str, seed: int | None = None) -> str | None:
        """Edit the image by ``instruction`` with ``model`` (a path or a library name). None when it started,
        else the one line that says why not (also in the status bar)."""
        refused = self._refusal(instruction, model, seed)
        if refused is not None:
            self.window.statusBar().showMessage(refused)
        return refused

    def _refusal(self, instruction: str, model: str, seed: int | None) -> str | None:
        from desktop_app.engine.edit_request import EditRequest  # torch-free
        from desktop_app.engine.request import MAX_SEED

        window = self.window
        if window.controller.running:
            return "Busy: edit the image when the current run has finished"
        try:
            image = self.image_file()
        except OSError as exc:
            return f"Not edited: the canvas image could not be written ({exc.strerror or exc})"
        if image is None:
            return "No image to edit: show one on the canvas or set a start image"
        seed = secrets.randbelow(MAX_SEED + 1) if seed is None else seed
        try:
            request = EditRequest(image=str(image), instruction=instruction, model=str(model or ""), seed=seed)
            request = replace(request, model=str(_edit_model(request.model).path))
        except RequestError as exc:
            reason = str(exc).removeprefix(f"{exc.field}:").strip()
            return f"{FIELD_LABELS.get(exc.field, exc.field)}: {reason}"
        except ModelError as exc:
            return " ".join(str(exc).split())
        if not window._may_replace_unsaved():
            return "Not edited: save the image first (File → Save As…)"
        if not window.controller.edit(request):
            return "Busy: edit the image when the current run has finished"
        return None

    # ---- the run, drawn --------------------------------------------------------------------------------

    def _on_started(self, request) -> None:
        window, view = self.window, self.window.view
        window.form.start_box.paint_button.setChecked(False)
        view.message_area.hide()
        view.stage_strip.reset(upscale=False)
        view.thumbnails.hide()
        view.progress_bar.setRange(0, request.steps or 1)
        view.progress_bar.setValue(0)
        view.step_label.setText("Starting…")
        window.labels.show_time(None)
        what = printable(request.instruction, 80)
        window.statusBar().showMessage(f"Editing {Path(request.image).name}: {what}…")

    def _on_edited(self, finished) -> None:
        window, view = self.window, self.window.view
        recipe = finished.recipe
        view.images = [pil_to_qimage(image) for image in finished.images]
        view.seeds = list(finished.seeds or [])
        view.shown_index = 0
        view.stage_strip.finish()
        image = view.images[0]
        view.canvas.set_image(image, f"{image.width()}×{image.height()} · seed {recipe.seed} · edited: "
                                     f"{printable(recipe.prompt, 60)}")
        view.progress_bar.setValue(view.progress_bar.maximum())
        total = (finished.timings or {}).get("total")
        done = f"Edited in {total:.1f} s" if isinstance(total, (int, float)) else "Edited"
        view.step_label.setText(done)
        window.labels.show_time(total)
        window.save_action.setEnabled(True)
        window.statusBar().showMessage(f"{done} · seed {recipe.seed} · {recipe.model_name}")


def _edit_model(name: str):
    """The model named, found and able to edit (models/edit_models.py); ModelError in one line when not."""
    from desktop_app.models import model_folder
    from desktop_app.models.edit_models import check_edit_model
    from desktop_app.models.model_library import resolve_model

    path = model_folder.check_folder(resolve_model(name))
    return check_edit_model(path, model_folder.display_name(name))


def wire_edit(window) -> EditWiring:
    return EditWiring(window)

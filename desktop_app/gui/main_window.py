"""The main window: the form on the left; the run view (stage strip, canvas, progress) on the right; the
gallery, models and fine-tuning docks; the status bar below.

The window is the view and its wiring. It never touches torch: it builds a request from the form and hands it
to the RunController (the queue, the workers, saving what finished), and draws what the controller's signals
report. The panels get what they need when they are made and say what the person wants through signals.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal, Slot
from PySide6.QtGui import QImage, QKeySequence
from PySide6.QtWidgets import QApplication, QDockWidget, QFileDialog, QMainWindow, QMessageBox, QSplitter

from desktop_app.engine.request import UpscaleRequest
from desktop_app.errors import FailureKind, RequestError
from desktop_app.gui import model_info, theme, window_state
from desktop_app.gui.about_dialog import APP_NAME, AboutDialog
from desktop_app.gui.drops import FileDrops
from desktop_app.gui.edit_wiring import wire_edit
from desktop_app.gui.explain_view import add_explain_dock
from desktop_app.gui.gallery import GalleryPanel
from desktop_app.gui.left_panel import LeftPanel
from desktop_app.gui.models_panel import ModelsPanel
from desktop_app.gui.run_controller import RunController, open_history, runs_of
from desktop_app.gui.run_view import RunView
from desktop_app.gui.side_dock import add_side_dock
from desktop_app.gui.start_image_wiring import wire_start_image
from desktop_app.gui.status_labels import StatusLabels
from desktop_app.gui.timeline_bar import TimelineBar
from desktop_app.gui.training_panel import TrainingPanel
from desktop_app.gui.weights_choice import wire_weights
from desktop_app.gui.window_menus import WindowMenus, name_shortcuts_in_tooltips
from desktop_app.studio import png_recipe as saving
from desktop_app.studio import settings as app_settings

FAILURE_TITLES = {  # by the failed signal's kind, a FailureKind value
    FailureKind.BAD_INPUT.value: "Check the settings",
    FailureKind.MODEL_DAMAGED.value: "Model problem",
    FailureKind.OUT_OF_MEMORY.value: "Out of memory",
    FailureKind.DISK.value: "The disk refused the write",
    FailureKind.ENGINE.value: "The engine stopped",
    FailureKind.INTERNAL.value: "Unexpected error",
}
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff *.gif);;All files (*)"


class MainWindow(QMainWindow):
    # UI-thread signals for what the person sees (tests and future panels such as a history listen to them)
    frame_shown = Signal(int, int)  # step, total: a progress update (and its preview, if any) is on screen
    run_ended = Signal(str)  # "finished", "failed" or "cancelled", after the window has updated

    def __init__(self, model: str | None = None, device: str = "auto", engine_factory=None):
        super().__init__()
        self.setWindowTitle(APP_NAME)
        self.setObjectName("main_window")
        self.resize(1200, 780)
        self._about: AboutDialog | None = None
        # damaged state never stops the window: each problem falls back and is told once
        self._settings, settings_notice = app_settings.load()
        history, history_notice = open_history()
        self.controller = RunController(device, engine_factory, self._settings, self._save_settings, history)

        # the parts, and the names tests and tools reach them by
        self.left_panel = left = LeftPanel()
        self.form, self.queue_panel = left.form, left.queue_panel
        self.generate_button, self.cancel_button = left.generate_button, left.cancel_button
        self.view = self.viewer = view = RunView(self.controller)
        self.stage_strip, self.message_area, self.canvas = view.stage_strip, view.message_area, view.canvas
        self.step_label, self.progress_bar, self.thumbnails = view.step_label, view.progress_bar, view.thumbnails
        self.labels = StatusLabels(self.statusBar(), self.controller)  # "Unsigned images" when credentials are off
        self.device_label, self.model_label = self.labels.device_label, self.labels.model_label
        self.time_label = self.labels.time_label
        self.menus = menus = WindowMenus(self.menuBar(), self)
        self.generate_action, self.cancel_action = menus.generate_action, menus.cancel_action
        self.save_action, self.upscale_action = menus.save_action, menus.upscale_action
        self.open_folder_action, self.about_action = menus.open_folder_action, menus.about_action
        self.theme_actions = menus.theme_actions
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self.left_panel)
        splitter.addWidget(self.view)
        splitter.setStretchFactor(0, 0)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([360, 840])
        self.setCentralWidget(splitter)
        self._build_panels()
        self._wire()
        app = QApplication.instance()  # app.quit() (session end, a signal handler) skips closeEvent
        if app is not None:
            app.aboutToQuit.connect(self.shutdown)

        if model:
            self.form.select_model(model)
        self.form.model_changed.connect(self.labels.show_model)
        self.labels.show_model(self.form.model())
        self._set_running(False)
        default_missing = not model_info.looks_like_model_folder(model_info.default_model_dir())
        if self.form.model() == "default" and default_missing:
            self.statusBar().showMessage("Ready. The embedded default model is not installed: choose a model "
                                         "folder under Model → Browse folder…")
        else:
            self.statusBar().showMessage("Ready")
        dropped = window_state.restore(self._settings, self.form, self)
        self.set_theme(self._settings.get("theme", "system"))
        notice = " ".join(text for text in (settings_notice, dropped) if text) or None
        self._tell_startup_problems(notice, history_notice)

    # ---- building ------------------------------------------------------------------------------

    def _build_panels(self) -> None:
        """The docks (the gallery in front; models and fine-tuning tabbed with it) and the timeline bar."""
        self.gallery = GalleryPanel(self.controller.history, folder_of=self.output_dir)
        self.gallery_dock = QDockWidget("Gallery", self)
        self.gallery_dock.setObjectName("gallery_dock")
        self.gallery_dock.setWidget(self.gallery)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.gallery_dock)
        self.gallery_action = self.gallery_dock.toggleViewAction()
        self.gallery_action.setText("&Gallery")
        self.gallery_action.setShortcut(QKeySequence("Ctrl+H"))
        view_menu = self.menus.view_menu
        view_menu.insertAction(view_menu.actions()[0], self.gallery_action)
        # the denoising frames of the last run, scrubbable, under the canvas
        self.timeline_bar = TimelineBar(self.controller.worker, self.menus.image_menu, self.output_dir)
        self.export_timeline_action = self.timeline_bar.export_action
        self.view.add_below_canvas(self.timeline_bar)
        # the model library; "Use" sets the form's model
        self.models_panel = ModelsPanel(self)
        self.models_dock, self.models_action = add_side_dock(
            self, self.models_panel, "Models", "models_dock", "&Models", view_menu, 1, self.gallery_dock)
        # LoRA fine-tuning, in a process of its own
        self.training_panel = TrainingPanel(self)
        self.training_dock, _ = add_side_dock(self, self.training_panel, "Fine-tune", "training_dock",
                                              "&Fine-tune", view_menu, tab_with=self.gallery_dock)
        self.explain_view, self.explain_dock = add_explain_dock(self)  # View → Explain…
        name_shortcuts_in_tooltips(self.generate_action, self.cancel_action, self.save_action,
                                   self.open_folder_action, self.gallery_action)

    def _wire(self) -> None:
        """The controller's reports to the view; the panels' intents to whoever acts on them."""
        run, view, bar = self.controller, self.view, self.statusBar()
        run.running_changed.connect(self._set_running)  # the view follows the rest itself (RunView)
        run.started.connect(lambda _request: self.labels.show_time(None))
        run.cancelling.connect(self._on_cancelling)
        run.finished.connect(self._on_finished)
        run.upscaled.connect(self._on_upscaled)
        run.failed.connect(self._on_failed)
        run.warmed.connect(self._on_warmed)
        for action, slot in ((self.menus.generate_action, self.generate), (self.menus.cancel_action, self.cancel),
                             (self.menus.save_action, self.save_as), (self.menus.quit_action, self.close),
                             (self.menus.upscale_action, self.choose_image_to_upscale),
                             (self.menus.open_folder_action, lambda: GalleryPanel.opener(self.output_dir())),
                             (self.menus.choose_folder_action, self.choose_output_dir),
                             (self.menus.about_action, self.show_about)):
            action.triggered.connect(slot)
        self.generate_button.clicked.connect(self.generate)
        self.cancel_button.clicked.connect(self.cancel)
        self.menus.theme_chosen.connect(self.set_theme)
        self.menus.components_changed.connect(lambda _family: self.form.show_model_note())
        FileDrops(self).dropped.connect(self.load_recipe_from)
        run.status.connect(bar.showMessage)
        run.status_note.connect(lambda note: bar.showMessage(f"{bar.currentMessage()} · {note}"))
        run.kept.connect(lambda _files: self.gallery.refresh())
        run.history_replaced.connect(lambda history: setattr(self.gallery, "history", history))
        run.queue_changed.connect(self.queue_panel.set_jobs)
        run.run_ended.connect(self.run_ended)
        view.status.connect(bar.showMessage)
        view.frame_shown.connect(self.frame_shown)
        self.queue_panel.remove_requested.connect(run.remove_queued)
        self.queue_panel.clear_requested.connect(run.clear_queue)
        self.gallery.recipe_chosen.connect(lambda entry: self.use_recipe(entry.params, str(entry.path)))
        self.gallery.image_chosen.connect(self._show_history_image)
        self.timeline_bar.frame_shown.connect(self.canvas.set_image)
        self.timeline_bar.exported.connect(
            lambda path, count: bar.showMessage(f"Timeline exported: {path} ({count} frames)"))
        self.timeline_bar.export_failed.connect(self._on_export_failed)
        self.models_panel.use_requested.connect(self.form.select_model)
        self.models_panel.changed.connect(self.form.refiner_choice.refresh)  # a refiner added or removed
        self.training_panel.lora_saved.connect(lambda _name: self.models_panel.refresh(hf_cache=False))
        self.start_image = wire_start_image(self)  # the start image, the mask painted on the canvas, their menus
        self.edit_wiring = wire_edit(self)  # Image → Edit with an Instruction… (edit models)
        wire_weights(self.form, self.controller)  # the Weights choice (auto, full, fp8) goes with each job

    # ---- what tests and other modules reach: the controller's state ------------------------------------

    worker = property(lambda self: self.controller.worker)
    history = property(lambda self: self.controller.history)
    _unsaved = property(lambda self: self.controller.unsaved)
    _result = property(lambda self: self.controller.result,
                       lambda self, finished: setattr(self.controller, "result", finished))
    _images = property(lambda self: self.view.images, lambda self, images: setattr(self.view, "images", images))

    def is_running(self) -> bool:
        return self.controller.running

    def queued(self) -> list:
        return self.controller.queued()

    def output_dir(self) -> Path:
        return self.controller.output_dir()

    # ---- commands ------------------------------------------------------------------------------

    @Slot()
    def generate(self) -> None:
        """Queue the form's request (runs × batch); it starts at once when nothing is running."""
        running = self.controller.running
        if not running and not self._may_replace_unsaved():
            return
        if not running:
            self.message_area.hide()
        self.form.clear_marks()
        try:
            request = self.form.build_request()
        except RequestError as exc:
            self._show_bad_input(str(exc), exc.field)
            return
        runs = self.form.runs_spin.value()
        self.controller.remember(request, runs)
        self.controller.enqueue(runs_of(request, runs))

    def _may_replace_unsaved(self) -> bool:
        """True when no image exists only in memory, or the person agrees to let it go."""
        if not self.controller.holding:
            return True
        answer = self.ask("Discard the image that was not saved?",
                          "The last image could not be saved and exists only here; a new run replaces it. "
                          "Save it first with File → Save As… (Ctrl+S), or go on and lose it?")
        if answer != QMessageBox.StandardButton.Yes:
            self.statusBar().showMessage("Save the image first: File → Save As… (Ctrl+S)")
            return False
        self.controller.let_go_of_unsaved()
        return True

    @Slot()
    def cancel(self) -> None:
        self.controller.cancel()

    @Slot()
    def save_as(self) -> None:
        result = self.controller.result
        if result is None or not result.images:
            return
        index = min(self.view.shown_index, len(result.images) - 1)
        start = _outputs_dir() / self.controller.suggested_name(index)
        path, _ = QFileDialog.getSaveFileName(self, "Save image as", str(start), "PNG image (*.png)")
        if not path:
            return
        if self.controller.would_replace_source(Path(path)):
            answer = self.ask("Replace the original image?",
                              f"{Path(path).name} is the image that was upscaled. Saving here replaces the "
                              "original with the upscaled image; the original cannot be recovered.")
            if answer != QMessageBox.StandardButton.Yes:
                self.statusBar().showMessage("Not saved: the original was left as it was")
                return
        try:
            saved = self.controller.save_image(index, Path(path))
        except OSError as exc:
            self.message_area.show_message("Could not save the image",
                                           f"{exc.strerror or exc}. The image is still here; try another folder.")
            self.statusBar().showMessage("Save failed")
            return
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
        self.controller.worker.warm_up()

    @Slot()
    def choose_image_to_upscale(self) -> None:
        if self.controller.running:
            return
        path, _ = QFileDialog.getOpenFileName(self, "Upscale an image", str(_outputs_dir()), IMAGE_FILTER)
        if path:
            self.upscale_file(path)

    def upscale_file(self, path, model: str = "default", scale: float | None = None) -> bool:
        """Upscale an image file in the upscale worker's thread, tile by tile; the result shows on the canvas
        and File → Save As… saves it. "default" is the form's model's upscaler, else the embedded one."""
        if self.controller.running:
            self.statusBar().showMessage("Busy: upscale the image when the current run has finished")
            return False
        if not self._may_replace_unsaved():
            return False
        try:
            request = UpscaleRequest(source=str(path), model=model, scale=scale,
                                     model_folder=str(model_info.model_dir(self.form.model())))
        except RequestError as exc:
            self._show_bad_input(str(exc), exc.field)
            return False
        return self.controller.upscale(request)

    # ---- what the controller reports ------------------------------------------------------------------

    @Slot()
    def _on_cancelling(self) -> None:
        self.cancel_button.setEnabled(False)
        self.cancel_action.setEnabled(False)

    @Slot(object)
    def _on_finished(self, finished) -> None:
        recipe = finished.recipe
        total = finished.timings.get("total") if finished.timings else recipe.total_seconds
        seeds = list(finished.seeds or [])
        if seeds and self.form.random_check.isChecked():
            self.form.show_used_seed(seeds[0])
        self.labels.show_finished(recipe)
        self.labels.show_time(total)
        done = f"Done in {total:.1f} s" if isinstance(total, (int, float)) else "Done"
        self.step_label.setText(done)
        status = f"{done} · seed {', '.join(str(seed) for seed in seeds)}" if seeds else done
        # memory fallbacks used, a VAE decode redone in float32
        self.statusBar().showMessage(" · ".join([status, *recipe.notices]))
        self.save_action.setEnabled(bool(self.view.images))

    @Slot(object)
    def _on_upscaled(self, finished) -> None:
        self.labels.show_time((finished.timings or {}).get("total"))
        self.save_action.setEnabled(True)

    @Slot(str, str)
    def _on_failed(self, kind: str, message: str) -> None:
        if kind == FailureKind.BAD_INPUT.value:
            field = message.split(":", 1)[0].strip() if ":" in message else ""
            self._show_bad_input(message, field)
        else:
            title = FAILURE_TITLES.get(kind, "Error")
            self.message_area.show_message(title, message)
            self.statusBar().showMessage(f"{title}: {message}")

    @Slot(bool, str)
    def _on_warmed(self, ok: bool, text: str) -> None:
        self.labels.show_device(ok, text)
        if not ok:
            self.message_area.show_message("The engine could not start", text)

    def _on_export_failed(self, reason: str) -> None:
        self.message_area.show_message("Could not export the timeline", reason)
        self.statusBar().showMessage("Timeline not exported")

    def _show_bad_input(self, message: str, field: str) -> None:
        label = self.form.field_label(field) if field else ""
        text = message
        if field and message.startswith(f"{field}:"):
            text = f"{label}: {message[len(field) + 1:].strip()}"
        self.form.mark_field(field, text)
        self.message_area.show_message(FAILURE_TITLES["bad_input"], text)
        self.statusBar().showMessage(f"{FAILURE_TITLES['bad_input']}: {text}")

    def _set_running(self, running: bool) -> None:
        self.left_panel.set_running(running)
        self.cancel_action.setEnabled(running)
        self.upscale_action.setEnabled(not running)

    # ---- settings, recipes from images, drops --------------------------------------------------------

    def _tell_startup_problems(self, settings_notice: str | None, history_notice: str | None) -> None:
        told = window_state.startup_message(settings_notice, history_notice)
        if told is not None:
            self.message_area.show_message(*told[:2])
            self.statusBar().showMessage(told[2])
        if settings_notice:  # told once: the broken file is gone now, and the next start is quiet
            self._save_settings()

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

    def _save_settings(self) -> None:
        problem = window_state.store(self._settings, self)
        if problem:
            self.statusBar().showMessage(problem)

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
        except Exception as exc:  # noqa: BLE001 - see above
            text = str(exc) if isinstance(exc, saving.NoRecipe) else \
                f"{path.name}: the recipe could not be read ({type(exc).__name__})"
            self.message_area.show_message("No recipe in that file", text)
            self.statusBar().showMessage("No recipe found")
            return False
        self.message_area.hide()
        self.use_recipe(found["request"], str(path))
        return True

    def _show_history_image(self, entry) -> None:
        if entry.missing:
            self.statusBar().showMessage(f"Missing: {entry.path} was moved or deleted")
            return
        image = QImage(str(entry.path))
        if not image.isNull():
            self.canvas.set_image(image, f"{image.width()}×{image.height()} · seed {entry.seed}")

    # ---- the end -------------------------------------------------------------------------------

    @Slot()
    def shutdown(self) -> None:
        """Stop a running training (it saves its state) and the worker threads. Safe to call twice.

        Call it (or close()) before dropping the window: a QThread destroyed while running aborts the process.
        """
        self.training_panel.shutdown()
        self.explain_view.shutdown()
        self.controller.shutdown()

    def closeEvent(self, event) -> None:
        self.controller.clear_queue()
        self.shutdown()
        self._save_settings()
        self.controller.close()
        if self._about is not None:
            self._about.close()
        super().closeEvent(event)


def _outputs_dir() -> Path:
    """Where Save As and Upscale start: the user's outputs folder, else home."""
    try:
        from desktop_app import paths

        folder = Path(paths.outputs_dir())
        folder.mkdir(parents=True, exist_ok=True)
        return folder
    except (ImportError, AttributeError, OSError):
        return Path.home()

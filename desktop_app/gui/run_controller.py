"""The run lifecycle of the window, without widgets: a QObject that owns the queue, the generation worker and
its thread, the upscale worker (made at the first upscale job), the edit worker (made at the first edit, in the
generation worker's thread), and what happens to finished work (every image kept in the output folder with its
recipe, the history, an image that could not be kept held for Save As).

The window is its view: it hands requests in (``enqueue``, ``upscale``, ``edit``, ``cancel``, ``save_image``) and
draws what the signals report. The signals come in this order for one run: ``started``, then ``stage`` and
``progress`` while it runs, then one of ``finished`` / ``upscaled`` / ``edited`` / ``failed`` / ``cancelled``,
then the notes about saving (``notice``, ``status``, ``status_note``), then ``run_ended``; the next queued request
starts after that. An edit begins with ``edit_started`` instead of ``started`` (the run view draws generations
and upscale jobs; gui/edit_wiring.py draws edits).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from PySide6.QtCore import QObject, QTimer, Signal, Slot

from desktop_app.gui.workers import EditWorker, GenerationWorker, UpscaleWorker, WorkerThread
from desktop_app.studio import history as history_db
from desktop_app.studio import outputs
from desktop_app.studio import png_recipe as saving
from desktop_app.studio import work_cleanup
from desktop_app.studio.history import History


class RunController(QObject):
    started = Signal(object)  # the request now running: a GenerationRequest, or an UpscaleRequest
    stage = Signal(str, str)  # stage, detail: only while a run is on
    progress = Signal(int, int, object, float, str)  # step, total, preview or None, elapsed, stage
    cancelling = Signal()  # a cancel was asked for; the run ends at the engine's next step or tile
    finished = Signal(object)  # a generation's Finished (its images are kept just after)
    upscaled = Signal(object)  # an upscale job's Finished (kept only by Save As)
    edit_started = Signal(object)  # the EditRequest now running (``started`` is not sent for an edit)
    edited = Signal(object)  # an edit's Finished (its image is kept just after, like a generation's)
    failed = Signal(str, str)  # kind (a FailureKind value), readable message
    cancelled = Signal()
    run_ended = Signal(str)  # "finished", "failed" or "cancelled", after the signals above
    running_changed = Signal(bool)
    queue_changed = Signal(object)  # the list of requests waiting
    warmed = Signal(bool, str)  # the generation worker's engine started (True, device) or could not (False, why)
    notice = Signal(str, str)  # title, text: something the person must read (an image not kept, a reset history)
    status = Signal(str)  # a status bar message
    status_note = Signal(str)  # to add to the status bar's message ("saved to …")
    kept = Signal(object)  # the list of files just kept in the output folder (the gallery lists them)
    history_replaced = Signal(object)  # a damaged history was moved aside: the new History

    def __init__(self, device: str = "auto", engine_factory=None, settings: dict | None = None,
                 save_settings=None, history: History | None = None, parent: QObject | None = None):
        super().__init__(parent)
        self.settings = settings if settings is not None else {}
        self._save_settings = save_settings or (lambda: None)
        self.history = history if history is not None else History(history_db.MEMORY)
        try:  # images of a run that ended before they were listed
            self.recovered = self.history.recover([self.output_dir()])
        except outputs.HISTORY_ERRORS:
            self.recovered = {}
        work_cleanup.clean(self.history)  # old canvas copies and masks no recipe names; never raises
        self.running = False
        self.cancelling_now = False
        self.request = None  # the running request
        self.result = None  # the last Finished (a generation's or an upscale job's)
        self.unsaved: list = []  # (image, seed) that could not be kept: Save As still has them
        self.holding = False  # True while an image exists only in memory (the next run would drop it)
        self.kept_files: list[Path] = []
        self.fallback_files: list[Path] = []
        self._queue: list = []
        self.weights = "auto"  # how the engine stores the weights (the form's Weights), sent with each job

        self.worker = GenerationWorker(device=device, engine_factory=engine_factory)
        self._thread = WorkerThread("generation-worker")
        self._connect(self.worker, self._thread, self._on_finished)
        self.worker.warmed.connect(self.warmed)
        self._thread.start()
        self._upscale_worker: UpscaleWorker | None = None
        self._upscale_thread: WorkerThread | None = None
        self._edit_worker: EditWorker | None = None
        self.run_ended.connect(lambda _how: QTimer.singleShot(0, self, self.start_next))  # the next always runs

    def _connect(self, worker: GenerationWorker, thread: WorkerThread, on_finished) -> None:
        worker.moveToThread(thread)
        worker.stage.connect(self._on_stage)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(on_finished)
        worker.failed.connect(self._on_failed)
        worker.cancelled.connect(self._on_cancelled)

    # ---- the queue ---------------------------------------------------------------------------------------

    def enqueue(self, requests: list) -> None:
        """Queue requests (a run × batch each); the first starts at once when nothing is running."""
        self._queue.extend(requests)
        self.queue_changed.emit(self.queued())
        if self.running:
            self.status.emit(f"Queued · {len(self._queue)} waiting")
        else:
            self.start_next()

    def queued(self) -> list:
        return list(self._queue)

    @Slot(int)
    def remove_queued(self, row: int) -> None:
        if 0 <= row < len(self._queue):
            del self._queue[row]
            self.queue_changed.emit(self.queued())

    @Slot()
    def clear_queue(self) -> None:
        self._queue.clear()
        self.queue_changed.emit(self.queued())

    @Slot()
    def start_next(self) -> None:
        if self.running or not self._queue:
            return
        if self.holding:  # the next run would replace an image that exists nowhere else
            self.status.emit(f"Queue paused · {len(self._queue)} waiting: save the image first "
                             "(File → Save As…), or press Generate to go on")
            return
        request = self._queue.pop(0)
        self.queue_changed.emit(self.queued())
        self._begin(request)
        self.worker.submit(request, self.weights)

    @Slot(str)
    def set_weights(self, mode: str) -> None:
        """The form's Weights ("auto", "full", "fp8"): the next job's Engine gets it (a queued one too)."""
        self.weights = mode

    def let_go_of_unsaved(self) -> None:
        """The person agreed that the next run may replace the image that was not saved."""
        self.holding = False

    # ---- upscaling an image file: a job of its own --------------------------------------------------------

    def upscale(self, request) -> bool:
        """Run an UpscaleRequest in the upscale worker's thread (made now, the first time). False when busy."""
        if self.running:
            return False
        if self._upscale_worker is None:
            self._upscale_worker = UpscaleWorker(device=self.worker.device,
                                                 engine_factory=self.worker._engine_factory)
            self._upscale_thread = WorkerThread("upscale-worker")
            self._connect(self._upscale_worker, self._upscale_thread, self._on_upscaled)
            self._upscale_thread.start()
        self._begin(request)
        self._upscale_worker.submit(request)
        return True

    # ---- editing an image by an instruction: a job of its own ---------------------------------------------

    def edit(self, request) -> bool:
        """Run an EditRequest (its model a checked path) in the generation worker's thread, on its Engine, by
        the edit worker (made now, the first time); the result is kept like a generation's. False when busy."""
        if self.running:
            return False
        if self._edit_worker is None:
            self._edit_worker = EditWorker(self.worker._get_engine, device=self.worker.device)
            self._connect(self._edit_worker, self._thread, self._on_edited)
        self._begin(request, self.edit_started)
        self._edit_worker.submit(request, self.weights)
        return True

    # ---- the running job ---------------------------------------------------------------------------------

    def _begin(self, request, started=None) -> None:
        self.request = request
        self._set_running(True)
        (started or self.started).emit(request)

    @Slot()
    def cancel(self) -> None:
        if not self.running or self.cancelling_now:
            return
        self.cancelling_now = True
        self.worker.cancel()  # direct call: the engine sees it at its next step
        if self._upscale_worker is not None:
            self._upscale_worker.cancel()  # an upscale job stops before its next tile
        if self._edit_worker is not None:
            self._edit_worker.cancel()  # an edit stops at its next step
        self.cancelling.emit()

    def _set_running(self, running: bool) -> None:
        self.running = running
        self.cancelling_now = False
        self.running_changed.emit(running)

    @Slot(str, str)
    def _on_stage(self, stage: str, detail: str) -> None:
        if self.running:  # a late signal of a run that already ended is dropped
            self.stage.emit(stage, detail)

    @Slot(int, int, object, float, str)
    def _on_progress(self, step: int, total: int, preview, elapsed: float, stage: str) -> None:
        if self.running:
            self.progress.emit(step, total, preview, elapsed, stage)

    @Slot(object)
    def _on_finished(self, finished) -> None:
        self._set_running(False)
        self.result = finished
        self.finished.emit(finished)
        self._keep_outputs(finished)
        self.run_ended.emit("finished")

    @Slot(object)
    def _on_upscaled(self, finished) -> None:
        self._set_running(False)
        self.result = finished
        self.kept_files = []  # the upscaled image is in no file yet: the last run's files are not on the canvas
        self.upscaled.emit(finished)
        self.run_ended.emit("finished")

    @Slot(object)
    def _on_edited(self, finished) -> None:
        self._set_running(False)
        self.result = finished
        self.edited.emit(finished)
        self._keep_outputs(finished)
        self.run_ended.emit("finished")

    @Slot(str, str)
    def _on_failed(self, kind: str, message: str) -> None:
        self._set_running(False)
        self.failed.emit(kind, message)
        self.run_ended.emit("failed")

    @Slot()
    def _on_cancelled(self) -> None:
        self._set_running(False)
        self.cancelled.emit()
        self.run_ended.emit("cancelled")

    # ---- what finished: kept, listed, remembered -----------------------------------------------------------

    def output_dir(self) -> Path:
        return outputs.output_dir(self.settings.get("output_dir"))

    def remember(self, request, runs: int) -> None:
        """The request the form last generated, for the next start."""
        values = request.to_dict()
        values.pop("preview", None)
        values["weights"] = self.weights  # no request field: the form's Weights comes back with the rest
        self.settings["last_request"] = values
        self.settings["runs"] = runs
        self._save_settings()

    def _keep_outputs(self, finished) -> None:
        """Every image into the output folder with its recipe, then into the history. The image comes first:
        a history failure is a warning (a damaged database is moved aside). An image that cannot be written
        (full disk, unwritable folder) stays here for Save As, and a copy goes to the fallback folder
        (``<user folder>/unsaved``) when that can be written; if not, the queue waits for Save As."""
        folder = self.output_dir()
        kept, fallback, self.unsaved = [], [], []
        seeds = list(finished.seeds or [])
        recipe = finished.recipe.to_dict()  # written into each PNG and history row
        error, history_errors = None, []
        for index, image in enumerate(finished.images):
            seed = seeds[index] if index < len(seeds) else None
            history = None if history_errors else self.history
            try:
                kept.append(outputs.keep_image(image, recipe, seed, folder, history, history_errors))
                continue
            except Exception as exc:  # noqa: BLE001 - OSError above all; nothing may stop the run ending
                error = exc
                self.unsaved.append((image, seed))
            try:
                fallback.append(outputs.keep_elsewhere(image, recipe, seed, saving.timestamped_name(seed)))
            except OSError:
                pass
        self.kept_files, self.fallback_files = kept, fallback
        if error is not None:
            self._not_kept(error, folder, fallback)
        elif kept:
            self.status_note.emit(f"saved to {folder}")
        if history_errors:
            self._history_failed(history_errors[0])
        if kept:
            self.kept.emit(kept)

    def _not_kept(self, error: BaseException, folder: Path, fallback: list[Path]) -> None:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        count = len(self.unsaved)
        title = "Could not keep the image" if count == 1 else f"Could not keep {count} images"
        if len(fallback) == count:
            where = ", ".join(sorted({str(path.parent) for path in fallback}))
            text = (f"{reason} while saving into {folder}. Nothing was lost: a copy was written to {where}, "
                    "and the image is still here: File → Save As… (Ctrl+S) saves it elsewhere. Choose "
                    "another output folder for the next images.")
        else:
            self.holding = True
            text = (f"{reason} while saving into {folder}. Nothing was lost: the image is still here. "
                    "Use File → Save As… (Ctrl+S) to save it elsewhere, or choose another output folder."
                    + (" The queue waits until then." if self._queue else ""))
        self.notice.emit(title, text)
        self.status.emit(f"Not saved: {reason}")

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
            self.history_replaced.emit(self.history)
            self.notice.emit("History was reset", f"{notice} The images were saved.")
        self.status_note.emit(f"history not updated: {reason}")

    def suggested_name(self, index: int) -> str:
        """The file name Save As offers for image ``index`` of the last result."""
        recipe = self.result.recipe
        if recipe.job == "upscale":
            return upscaled_name(recipe)
        seeds = list(self.result.seeds or [])
        return saving.suggested_name(recipe.prompt, seeds[index] if index < len(seeds) else None)

    def would_replace_source(self, path: Path) -> bool:
        """Saving the last result at ``path`` would overwrite the image it was upscaled from."""
        recipe = self.result.recipe
        source = recipe.input if recipe.job == "upscale" else None
        return bool(source) and outputs.same_file(source, saving.png_path(Path(path)))

    def save_image(self, index: int, path: Path) -> Path:
        """Save image ``index`` of the last result at ``path`` with its recipe (OSError when it cannot be
        written). An image that existed only here is safe now: a queue held for it goes on."""
        result = self.result
        seeds = list(result.seeds or [])
        image = result.images[index]
        saved = outputs.save_png(image, Path(path), result.recipe.to_dict(),
                                 seeds[index] if index < len(seeds) else None)
        self.unsaved = [(kept, seed) for kept, seed in self.unsaved if kept is not image]
        if not self.unsaved and self.holding:
            self.holding = False
            QTimer.singleShot(0, self, self.start_next)
        return saved

    # ---- the end ------------------------------------------------------------------------------------------

    @Slot()
    def shutdown(self) -> None:
        """Cancel a running job and wait for the worker threads to end. Safe to call twice.

        Call it before dropping the controller: a QThread destroyed while running aborts the process."""
        if self._thread.isRunning():
            self.worker.cancel()
            if self._edit_worker is not None:
                self._edit_worker.cancel()
            self._thread.quit()
            self._thread.wait()
        if self._upscale_worker is not None and self._upscale_thread.isRunning():
            self._upscale_worker.cancel()
            self._upscale_thread.quit()
            self._upscale_thread.wait()

    def close(self) -> None:
        """The window closes: nothing more starts, the threads end, the history is closed."""
        self._queue.clear()
        self.shutdown()
        self.history.close()


def open_history() -> tuple[History, str | None]:
    """The history, checked; a damaged one is moved aside (with a notice). When none can be opened at all
    (a read-only user folder, a locked database), one in memory: images are still saved, not listed later."""
    try:
        return History.open_checked()
    except (sqlite3.Error, OSError, ValueError) as exc:
        reason = " ".join((getattr(exc, "strerror", None) or str(exc) or type(exc).__name__).split())
        return History(history_db.MEMORY), (
            f"The history could not be opened ({reason}). New images are still saved in the output folder, "
            "but the gallery forgets them when the window closes.")


def runs_of(request, runs: int) -> list:
    """``runs`` jobs for the queue. With a fixed seed, run k starts at seed + k × batch size, so every image
    has its own seed; with a random seed each run draws its own."""
    if runs <= 1 or request.seed is None:
        return [request] * max(1, runs)
    from desktop_app.engine.request import MAX_SEED

    return [request.with_seed((request.seed + k * request.batch_size) % (MAX_SEED + 1)) for k in range(runs)]


def upscaled_name(recipe) -> str:
    """photo.jpg upscaled 4x -> photo-x4.png (``recipe``: an UpscaleRecipe)"""
    stem = Path(str(recipe.input or "image")).stem or "image"
    return f"{stem}-x{recipe.scale:g}.png"

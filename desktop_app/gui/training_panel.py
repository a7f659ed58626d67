"""The fine-tuning panel: pick a folder of images, set a trigger word, train a LoRA in a separate process.

The training runs as ``python -m desktop_app.training.run`` under a QProcess (no torch in the window; a crash
or an out-of-memory there cannot take the window down). Its JSON-line events drive the loss curve, the sample
images, elapsed time and ETA; Pause and Cancel are written to its stdin; Resume starts it again with
``--resume``, also after the app was restarted (the job folder keeps config and checkpoint).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from PySide6.QtCore import QProcess, QSize, Qt, Signal, Slot
from PySide6.QtGui import QIcon, QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_app.errors import FailureKind, ModelError, RequestError
from desktop_app.training import checkpoint, dataset
from desktop_app.training import device_memory
from desktop_app.training.config import RARE_TOKENS, TrainConfig, job_path, preset, preset_line
from desktop_app.training.support import check_model
from desktop_app.gui.buttons import action_button
from desktop_app.gui.images import pil_to_qimage
from desktop_app.gui.loss_curve import LossCurve

THUMB = 56
# what a person can do about a failed training, by its "failed" event's "kind" (a FailureKind value; the
# others: "bad_input" and "engine" say it in their message, "internal" has its traceback on stderr)
FAILURE_HINTS = {
    FailureKind.OUT_OF_MEMORY.value: "Out of memory: try a lower resolution or batch size.",
    FailureKind.DISK.value: "Free some disk space; Resume continues from the last checkpoint.",
}


class TrainingPanel(QWidget):
    state_changed = Signal(str)  # "idle", "running", "paused", "cancelled", "finished", "failed"
    lora_saved = Signal(str)  # the LoRA's name, once both files are in the LoRA folder
    event_received = Signal(dict)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.process: QProcess | None = None
        self.state = "idle"
        self.scan: dataset.Scan | None = None
        self.last_event: dict = {}
        self.failure_kind = ""  # the FailureKind value of the last failure the process reported
        self._buffer = b""
        self._resuming = False
        self._build()
        self.apply_preset("cpu")
        self._update_buttons()

    # ---- layout ------------------------------------------------------------------------------------------

    def _build(self) -> None:
        inner = QWidget()
        layout = QVBoxLayout(inner)
        row = QHBoxLayout()
        self.folder_edit = QLineEdit(placeholderText="a folder of PNG, JPEG or WebP images")
        self.folder_edit.editingFinished.connect(lambda: self.set_folder(self.folder_edit.text()))
        choose = QPushButton("Choose…")
        choose.clicked.connect(self.choose_folder)
        row.addWidget(self.folder_edit, 1)
        row.addWidget(choose)
        layout.addLayout(row)
        self.thumbs = QListWidget()
        self.thumbs.setViewMode(QListWidget.ViewMode.IconMode)
        self.thumbs.setIconSize(QSize(THUMB, THUMB))
        self.thumbs.setMaximumHeight(THUMB * 2 + 24)
        self.thumbs.setToolTip("The images that will be used (a .txt caption beside one replaces the prompt)")
        layout.addWidget(self.thumbs)
        self.unusable = QListWidget()
        self.unusable.setMaximumHeight(60)
        self.unusable.setToolTip("Images that cannot be used, with the reason")
        layout.addWidget(self.unusable)

        form = QFormLayout()
        token_row = QHBoxLayout()
        self.token_edit = QLineEdit(RARE_TOKENS[0])
        suggest = action_button("Suggest", "A rare word the model has no meaning for yet", self.suggest_token)
        token_row.addWidget(self.token_edit, 1)
        token_row.addWidget(suggest)
        form.addRow("Trigger word", token_row)
        self.class_edit = QLineEdit(placeholderText="dog, person, style …")
        form.addRow("Class word", self.class_edit)
        self.name_edit = QLineEdit(placeholderText="LoRA name (default: the trigger word)")
        self.name_edit.textChanged.connect(self._update_buttons)
        self.token_edit.textChanged.connect(self._update_buttons)
        form.addRow("LoRA name", self.name_edit)
        self.model_edit = QLineEdit("default")
        form.addRow("Base model", self.model_edit)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["cpu", "cuda", "mps"])
        self.device_combo.currentTextChanged.connect(self.apply_preset)
        form.addRow("Device (preset)", self.device_combo)
        self.preset_label = QLabel(objectName="training_preset", wordWrap=True)  # what the preset chose, why
        form.addRow("", self.preset_label)
        self.resolution = _spin(32, 2048, 8)
        self.rank = _spin(1, 256)
        self.lr = QDoubleSpinBox(decimals=6, minimum=1e-6, maximum=0.1, singleStep=1e-4)
        self.steps = _spin(1, 100_000)
        self.batch = _spin(1, 64)
        self.accumulate = _spin(1, 256)
        self.accumulate.setToolTip("Add up this many batches before each step: a step learns from batch x this")
        self.processes = _spin(1, 64)
        self.processes.setToolTip("Train on this many processes (one per GPU; CPU processes without a GPU)")
        self.seed = _spin(0, 2**31 - 1)
        self.crop = QComboBox()
        self.crop.addItems(["center", "random"])
        for label, widget in (("Resolution", self.resolution), ("Rank", self.rank), ("Learning rate", self.lr),
                              ("Steps", self.steps), ("Batch", self.batch), ("Accumulate", self.accumulate),
                              ("Processes", self.processes), ("Seed", self.seed), ("Crop", self.crop)):
            form.addRow(label, widget)
        layout.addLayout(form)

        self.advanced = QGroupBox("Advanced", checkable=True, checked=False)
        adv = QFormLayout(self.advanced)
        self.text_encoder = QCheckBox("train the text encoder too (CLIP models)")
        self.prior = QCheckBox("prior preservation with class images by the base model")
        self.class_images = _spin(1, 1000, value=8)
        self.snr_gamma = QDoubleSpinBox(decimals=1, minimum=0, maximum=20, value=0)
        self.noise_offset = QDoubleSpinBox(decimals=3, minimum=0, maximum=1, singleStep=0.01, value=0)
        self.sample_every = _spin(0, 100_000, value=100)
        self.sample_steps = _spin(1, 150, value=20)
        self.checkpoint_every = _spin(0, 100_000, value=50)
        self.sample_prompt = QLineEdit(placeholderText="validation prompt (default: the instance prompt)")
        self.mixed_precision = QComboBox()
        self.mixed_precision.addItems(["auto", "no", "fp16", "bf16"])
        self.adam8 = QCheckBox("8-bit Adam (bitsandbytes)")
        for label, widget in (("", self.text_encoder), ("", self.prior), ("Class images", self.class_images),
                              ("Min-SNR gamma (0 off)", self.snr_gamma), ("Noise offset", self.noise_offset),
                              ("Sample every N steps", self.sample_every), ("Sample steps", self.sample_steps),
                              ("Checkpoint every N", self.checkpoint_every), ("Sample prompt", self.sample_prompt),
                              ("Mixed precision", self.mixed_precision), ("", self.adam8)):
            adv.addRow(label, widget)
        layout.addWidget(self.advanced)

        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start")
        self.pause_button = QPushButton("Pause")
        self.resume_button = QPushButton("Resume")
        self.cancel_button = QPushButton("Cancel")
        self.start_button.clicked.connect(lambda: self.start())
        self.pause_button.clicked.connect(lambda: self.send("pause"))
        self.resume_button.clicked.connect(lambda: self.start(resume=True))
        self.cancel_button.clicked.connect(self.cancel)
        for button in (self.start_button, self.pause_button, self.resume_button, self.cancel_button):
            buttons.addWidget(button)
        layout.addLayout(buttons)
        self.status = QLabel("Pick a folder of images to start.")
        self.status.setWordWrap(True)
        layout.addWidget(self.status)
        self.curve = LossCurve()
        layout.addWidget(self.curve)
        self.samples_row = QHBoxLayout()
        self.sample_labels = [QLabel() for _ in range(2)]
        for label in self.sample_labels:
            label.setFixedSize(96, 96)
            label.setAlignment(Qt.AlignmentFlag.AlignCenter)
            label.setScaledContents(True)
            self.samples_row.addWidget(label)
        self.samples_row.addStretch(1)
        layout.addLayout(self.samples_row)
        self.originality = QListWidget()
        self.originality.setMaximumHeight(70)
        self.originality.setToolTip("For each sample, the nearest training image by the image tower, with a "
                                    "similarity (1.0 = the same picture); near copy: its colour layout "
                                    "matches one")
        layout.addWidget(self.originality)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(inner)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)

    # ---- settings ----------------------------------------------------------------------------------------

    @Slot(str)
    def apply_preset(self, device: str) -> None:
        memory = device_memory.memory_gb(device)  # nvidia-smi, or a Mac's memory; None: the base preset
        values = preset(device, memory, check_8bit=False)
        self.preset_label.setText(preset_line(device, memory, values))
        for spin, key in ((self.accumulate, "accumulate"), (self.resolution, "resolution"), (self.rank, "rank"),
                          (self.lr, "learning_rate"), (self.steps, "steps"), (self.batch, "batch_size")):
            spin.setValue(values.get(key, 1))
        cuda = device == "cuda"  # MPS and the CPU: no CUDA-only options shown
        self.mixed_precision.setCurrentText(values["mixed_precision"])
        self.mixed_precision.setVisible(cuda)
        self.advanced.layout().labelForField(self.mixed_precision).setVisible(cuda)
        self.adam8.setVisible(cuda)
        self.adam8.setChecked(bool(values["use_8bit_adam"]))

    def suggest_token(self) -> None:
        current = self.token_edit.text().strip()
        index = RARE_TOKENS.index(current) + 1 if current in RARE_TOKENS else 0
        self.token_edit.setText(RARE_TOKENS[index % len(RARE_TOKENS)])

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Folder of training images", self.folder_edit.text())
        if folder:
            self.set_folder(folder)

    def set_folder(self, folder: str) -> None:
        self.folder_edit.setText(folder)
        self.thumbs.clear()
        self.unusable.clear()
        self.scan = None
        if not folder.strip():
            return
        try:
            self.scan = dataset.scan(folder)
        except dataset.DatasetError as exc:
            self.show_status(str(exc), error=True)
            return
        for item in self.scan.usable:
            prepared = dataset.prepare(item.path, THUMB)
            entry = QListWidgetItem(QIcon(QPixmap.fromImage(pil_to_qimage(prepared))), item.path.name)
            entry.setToolTip(item.caption or "(no caption: the instance prompt)")
            self.thumbs.addItem(entry)
        for path, reason in self.scan.unusable:
            self.unusable.addItem(f"{path.name}: {reason}")
        for warning in self.scan.warnings:
            self.unusable.addItem(f"warning: {warning}")
        self.show_status(f"{len(self.scan.usable)} usable image(s), {len(self.scan.unusable)} unusable.")

    def job_name(self) -> str:
        return self.name_edit.text().strip() or self.token_edit.text().strip()

    def job_folder(self, name: str | None = None) -> Path:
        """``training/NAME`` for a checked name; RequestError for one that is not a safe LoRA name."""
        return job_path(name or self.job_name())

    def has_checkpoint(self) -> bool:
        try:
            return checkpoint.exists(self.job_folder())
        except RequestError:  # empty, or not a usable name: no job of that name can exist
            return False

    def load_job(self, config: TrainConfig) -> None:
        """Show a saved job's settings (Resume after a restart continues it as it was)."""
        self.device_combo.setCurrentText(config.device.split(":", 1)[0])
        self.token_edit.setText(config.token)
        self.name_edit.setText(config.name)
        self.class_edit.setText(config.class_word)
        self.model_edit.setText(config.model)
        for box, value in ((self.resolution, config.resolution), (self.rank, config.rank),
                           (self.steps, config.steps), (self.batch, config.batch_size), (self.seed, config.seed),
                           (self.accumulate, config.accumulate), (self.processes, config.processes),
                           (self.class_images, config.class_images), (self.sample_every, config.sample_every),
                           (self.sample_steps, config.sample_steps),
                           (self.checkpoint_every, config.checkpoint_every)):
            box.setValue(value)
        self.lr.setValue(config.learning_rate)
        self.snr_gamma.setValue(config.snr_gamma)
        self.noise_offset.setValue(config.noise_offset)
        self.crop.setCurrentText(config.crop)
        self.text_encoder.setChecked(config.train_text_encoder)
        self.prior.setChecked(config.prior_preservation)
        self.sample_prompt.setText(config.sample_prompt)
        self.mixed_precision.setCurrentText(config.mixed_precision)
        self.adam8.setChecked(config.use_8bit_adam)
        self.set_folder(config.images)

    def config(self) -> TrainConfig:
        token = self.token_edit.text().strip()
        return TrainConfig(
            images=self.folder_edit.text().strip(), token=token, name=self.name_edit.text().strip() or token,
            class_word=self.class_edit.text().strip(), model=self.model_edit.text().strip() or "default",
            device=self.device_combo.currentText(), steps=self.steps.value(), rank=self.rank.value(),
            learning_rate=self.lr.value(), batch_size=self.batch.value(), resolution=self.resolution.value(),
            accumulate=self.accumulate.value(), processes=self.processes.value(),
            seed=self.seed.value(), crop=self.crop.currentText(), train_text_encoder=self.text_encoder.isChecked(),
            prior_preservation=self.prior.isChecked(), class_images=self.class_images.value(),
            snr_gamma=self.snr_gamma.value(), noise_offset=self.noise_offset.value(),
            checkpoint_every=self.checkpoint_every.value(), sample_every=self.sample_every.value(),
            sample_steps=self.sample_steps.value(), sample_prompt=self.sample_prompt.text().strip(),
            mixed_precision=self.mixed_precision.currentText() if self.device_combo.currentText() == "cuda"
            else "no", use_8bit_adam=self.adam8.isChecked() and self.device_combo.currentText() == "cuda")

    # ---- the process -------------------------------------------------------------------------------------

    def start(self, resume: bool = False) -> bool:
        """Start (or resume) training in a separate process. False, with the reason shown, on bad input."""
        if self.is_running():
            return False
        try:  # the name first: it becomes a folder, so nothing is read or made before it is checked
            saved = self.job_folder() / "job.json"
        except RequestError as exc:
            problem = exc
            if not self.name_edit.text().strip():  # the name is the trigger word: say what is wrong with it
                try:
                    self.config()
                except RequestError as token_problem:
                    problem = token_problem
            self.show_status(str(problem), error=True)
            return False
        if resume and self.state == "idle" and saved.is_file():  # after a restart: the job as it was saved
            try:
                self.load_job(TrainConfig.load(saved))
            except RequestError as exc:
                self.show_status(f"cannot read the saved job: {exc}", error=True)
                return False
        try:
            config = self.config()
            check_model(config.model)  # SDXL and others the trainer cannot fine-tune: said here, not later
            if self.scan is None or str(self.scan.folder) != str(Path(config.images).expanduser()):
                self.set_folder(config.images)
            if self.scan is None:
                return False
            dataset.check_ready(self.scan, config.batch_size)
        except (RequestError, ModelError, dataset.DatasetError) as exc:
            self.show_status(" ".join(str(exc).split()), error=True)
            return False
        folder = job_path(config.name)
        folder.mkdir(parents=True, exist_ok=True)
        job = folder / "job.json"
        config.save(job)
        if not resume:
            self.curve.clear(config.steps)
            self.originality.clear()
            for label in self.sample_labels:
                label.clear()
        self.curve.total = config.steps
        self._buffer = b""
        self._resuming = resume
        self.process = QProcess(self)
        self.process.setProcessChannelMode(QProcess.ProcessChannelMode.SeparateChannels)
        self.process.readyReadStandardOutput.connect(self._read_events)
        self.process.finished.connect(self._on_exit)
        arguments = ["-m", "desktop_app.training.run", "--config", str(job)] + (["--resume"] if resume else [])
        self.process.start(sys.executable, arguments)
        self._set_state("running")
        self.show_status("resuming…" if resume else "starting the training process (loading the model)…")
        return True

    def send(self, command: str) -> None:
        if self.is_running():
            self.process.write(f"{command}\n".encode())
            self.show_status(f"{command}: saving a checkpoint at the end of this step…")

    def cancel(self) -> None:
        if self.is_running():
            self.send("cancel")
        elif self.state == "paused":
            self._set_state("cancelled")
            self.show_status("cancelled; the checkpoint stays in the job folder")

    def is_running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    def _read_events(self) -> None:
        self._buffer += bytes(self.process.readAllStandardOutput())
        *lines, self._buffer = self._buffer.split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.handle_event(event)

    def handle_event(self, event: dict) -> None:
        self.last_event = event
        kind = event.get("event")
        if kind == "step":
            self.curve.add(event["step"], event["loss"])
            eta = f", ETA {_clock(event['eta'])}" if event.get("eta") is not None else ""
            self.show_status(f"step {event['step']}/{event['total']}  loss {event['loss']:.4f}  "
                             f"elapsed {_clock(event['elapsed'])}{eta}")
        elif kind == "started" and event.get("resumed"):
            self.curve.points = [p for p in self.curve.points if p[0] <= event["step"]]
        elif kind == "sample":
            for label, path in zip(self.sample_labels, event["paths"]):
                label.setPixmap(QPixmap(path))
                label.setToolTip(f"step {event['step']}: {path}")
        elif kind == "class_image":
            self.show_status(f"drawing class image {event['index']}/{event['total']}…")
        elif kind == "finished":
            self.originality.clear()
            for entry in event["originality"]:
                flag = "  (near copy!)" if entry["near_copy"] else ""
                self.originality.addItem(f"{Path(entry['sample']).name} ~ {Path(entry['nearest']).name}: "
                                         f"similarity {entry['similarity']:.3f}{flag}")
            self.show_status(f"done: LoRA {Path(event['files']['kohya']).stem} is in the LoRA list; put "
                             f"{event['trigger']} in the prompt.")
            self._set_state("finished")
            self.lora_saved.emit(Path(event["files"]["kohya"]).stem)
        elif kind == "paused":
            self._set_state("paused")
            self.show_status(f"paused at step {event['step']}; Resume continues (also after a restart).")
        elif kind == "cancelled":
            self._set_state("cancelled")
            self.show_status(f"cancelled at step {event['step']}; the checkpoint stays in the job folder.")
        elif kind == "failed":
            self.failure_kind = str(event.get("kind", FailureKind.INTERNAL.value))
            self._set_state("failed")
            hint = FAILURE_HINTS.get(self.failure_kind, "")
            self.show_status(f"{event['message']} {hint}".strip(), error=True)
        self.event_received.emit(event)

    def _on_exit(self, code: int, status) -> None:
        self._read_events()
        if self.state == "running":  # it ended without a last word: killed, crashed, out of memory
            tail = bytes(self.process.readAllStandardError()).decode(errors="replace").strip().splitlines()[-1:]
            self._set_state("failed")
            self.show_status(f"the training process stopped (exit {code}){': ' + tail[0] if tail else ''}. "
                             "Resume continues from the last checkpoint.", error=True)
        self._update_buttons()

    def _set_state(self, state: str) -> None:
        self.state = state
        self._update_buttons()
        self.state_changed.emit(state)

    def _update_buttons(self) -> None:
        running = self.is_running() and self.state == "running"
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.cancel_button.setEnabled(running or self.state == "paused")
        self.resume_button.setEnabled(not running and (self.state in ("paused", "failed", "cancelled")
                                                       or self.has_checkpoint()))

    def show_status(self, text: str, error: bool = False) -> None:
        self.status.setText(" ".join(text.split()))
        self.status.setStyleSheet("color: #c0392b;" if error else "")

    def shutdown(self) -> None:
        """At window close: ask the process to pause (save state) and wait a little for it."""
        if self.is_running():
            self.send("pause")
            if not self.process.waitForFinished(15_000):
                self.process.kill()
                self.process.waitForFinished(5_000)


def _spin(low: int, high: int, step: int = 1, value: int | None = None) -> QSpinBox:
    box = QSpinBox(minimum=low, maximum=high, singleStep=step)
    if value is not None:
        box.setValue(value)
    return box


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}"

"""The form on the left: everything a GenerationRequest holds, each field constrained to its allowed range."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_app.resources import DEFAULT_MODEL
from desktop_app.engine.request import MAX_SEED, MAX_SIZE, MIN_SIZE, SAMPLERS, GenerationRequest

from desktop_app.gui import model_info
from desktop_app.gui.control_rows import ControlRows
from desktop_app.gui.hires_fields import hires_fields
from desktop_app.gui.image_prompt_row import IMAGE_PROMPT_FIELD_WIDGETS, ImagePromptRow
from desktop_app.gui.weights_choice import weights_combo
from desktop_app.models import few_step, resolve
from desktop_app.gui.lora_picker import LoraPicker
from desktop_app.gui.path_combo import path_index
from desktop_app.gui.refiner_choice import RefinerChoice
from desktop_app.gui.start_image_box import START_FIELD_WIDGETS, StartImageBox

BROWSE = "__browse__"
UPSCALE_DEFAULT = "default"

# request field -> (form label, widget attribute) for pointing at a bad value
FIELD_WIDGETS = {
    "prompt": ("Prompt", "prompt_edit"),
    "negative_prompt": ("Negative prompt", "negative_edit"),
    "width": ("Width", "width_spin"),
    "height": ("Height", "height_spin"),
    "steps": ("Steps", "steps_spin"),
    "guidance_scale": ("Guidance", "guidance_spin"),
    "sampler": ("Sampler", "sampler_combo"),
    "seed": ("Seed", "seed_spin"),
    "batch_size": ("Batch", "batch_spin"),
    "model": ("Model", "model_combo"),
    "upscale": ("Upscale", "upscaler_combo"),
    "hires_scale": ("Hires fix", "hires_spin"),
    "hires_strength": ("Hires strength", "hires_strength_spin"),
    "refiner": ("Refiner", "refiner_choice"),
    "refiner_switch": ("Refiner switch", "refiner_choice"),
    "controls": ("ControlNet", "control_rows"),
} | START_FIELD_WIDGETS | IMAGE_PROMPT_FIELD_WIDGETS


# the request's own defaults, for models that declare none (the command line falls back to them too)
REQUEST_DEFAULTS = {f.name: f.default for f in fields(GenerationRequest)
                    if f.name in ("steps", "guidance_scale", "sampler")}


class SizeSpinBox(QSpinBox):
    """A size in pixels: only multiples of 8 are accepted; anything else is rounded when editing ends."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setRange(MIN_SIZE, MAX_SIZE)
        self.setSingleStep(8)
        self.setSuffix(" px")

    def validate(self, text: str, pos: int):
        state, text, pos = super().validate(text, pos)
        if state == QValidator.State.Acceptable and self.valueFromText(text) % 8:
            state = QValidator.State.Intermediate
        return state, text, pos

    def fixup(self, text: str) -> str:
        digits = "".join(ch for ch in text if ch.isdigit())
        if not digits:
            return super().fixup(text)
        value = min(self.maximum(), max(self.minimum(), round(int(digits) / 8) * 8))
        return self.textFromValue(value)


class GenerationForm(QWidget):
    model_changed = Signal(str)  # "default" or a folder path
    weights_changed = Signal(str)  # "auto", "full" or "fp8": how the engine stores the weights (weights_choice)
    UPSCALE_DEFAULT = UPSCALE_DEFAULT  # for form_filling, which does not import this module

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("generation_form")
        self._last_model_index = 0

        # 1. prompt
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setObjectName("prompt")
        self.prompt_edit.setPlaceholderText("What to draw, e.g. “a smiling cat face”")
        self.prompt_edit.setTabChangesFocus(True)
        self.prompt_edit.setFixedHeight(84)
        self.negative_edit = QPlainTextEdit()
        self.negative_edit.setObjectName("negative_prompt")
        self.negative_edit.setPlaceholderText("What to avoid (optional)")
        self.negative_edit.setTabChangesFocus(True)
        self.negative_edit.setFixedHeight(52)
        prompt_box = QGroupBox("Prompt")
        prompt_layout = QVBoxLayout(prompt_box)
        prompt_layout.addWidget(self.prompt_edit)
        negative_label = QLabel("Negative prompt")
        negative_label.setBuddy(self.negative_edit)
        prompt_layout.addWidget(negative_label)
        prompt_layout.addWidget(self.negative_edit)

        # 2. model and image
        self.model_combo = QComboBox()
        self.model_combo.setObjectName("model")
        self.model_combo.addItem(model_info.display_name(DEFAULT_MODEL), DEFAULT_MODEL)
        self.model_combo.setItemData(0, str(model_info.default_model_dir()), Qt.ItemDataRole.ToolTipRole)
        self.model_combo.insertSeparator(1)
        self.model_combo.addItem("Browse folder…", BROWSE)
        self.model_combo.activated.connect(self._on_model_activated)
        self.width_spin = SizeSpinBox()
        self.width_spin.setObjectName("width")
        self.height_spin = SizeSpinBox()
        self.height_spin.setObjectName("height")
        self.width_spin.setValue(64)
        self.height_spin.setValue(64)
        size_row = QHBoxLayout()
        size_row.addWidget(self.width_spin, 1)
        size_row.addWidget(QLabel("×"))
        size_row.addWidget(self.height_spin, 1)
        self.batch_spin = QSpinBox()
        self.batch_spin.setObjectName("batch")
        self.batch_spin.setRange(1, 16)
        self.batch_spin.setToolTip("How many images to draw at once, each with its own seed")
        self.runs_spin = QSpinBox()
        self.runs_spin.setObjectName("runs")
        self.runs_spin.setRange(1, 100)
        self.runs_spin.setToolTip("How many runs to queue; with a fixed seed each run goes on from the "
                                  "last seed of the one before")
        self.upscale_check = QCheckBox("Upscale")
        self.upscale_check.setObjectName("upscale")
        self.upscale_check.setChecked(True)
        self.upscale_check.setToolTip("Enlarge the result with an upscaler model (the model's own is 4x)")
        self.upscaler_combo = QComboBox()
        self.upscaler_combo.setObjectName("upscaler")
        self.upscaler_combo.setToolTip("Which upscaler: the model's own, a file in the upscalers folder "
                                       "(<user folder>/models/upscalers), or any .safetensors/.pth file")
        self.upscaler_combo.activated.connect(self._on_upscaler_activated)
        self._fill_upscalers()
        upscale_row = QHBoxLayout()
        upscale_row.addWidget(self.upscale_check)
        upscale_row.addWidget(self.upscaler_combo, 1)
        self.hires_spin, self.hires_strength_spin, hires_row = hires_fields()  # Off, or 1.25x .. 4x
        image_box = QGroupBox("Model and image")
        image_form = QFormLayout(image_box)
        image_form.addRow("Model", self.model_combo)
        self.model_note = QLabel()  # what the chosen model lacks (a transformer file's components), in one line
        self.model_note.setObjectName("model_note")
        self.model_note.setWordWrap(True)
        self.model_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.model_note.setStyleSheet("color: #d9534f;")
        self.model_note.hide()
        image_form.addRow("", self.model_note)
        self.weights_combo = weights_combo()  # auto / full / fp8, handed to the worker's Engine with each job
        self.weights_combo.currentTextChanged.connect(self.weights_changed)
        image_form.addRow("Weights", self.weights_combo)
        image_form.addRow("Size", size_row)
        batch_row = QHBoxLayout()
        batch_row.addWidget(self.batch_spin, 1)
        batch_row.addWidget(QLabel("images × runs"))
        batch_row.addWidget(self.runs_spin, 1)
        image_form.addRow("Batch", batch_row)
        image_form.addRow("", upscale_row)
        image_form.addRow("Hires fix", hires_row)
        self.refiner_choice = RefinerChoice()  # SDXL base models: a refiner finishes the last steps
        image_form.addRow("Refiner", self.refiner_choice)

        # 3. sampling
        self.steps_spin = QSpinBox()
        self.steps_spin.setObjectName("steps")
        self.steps_spin.setRange(1, 150)
        self.steps_spin.setValue(20)
        self.steps_spin.setToolTip("Denoising steps: more is slower and usually cleaner")
        self.guidance_spin = QDoubleSpinBox()
        self.guidance_spin.setObjectName("guidance")
        self.guidance_spin.setRange(0.0, 30.0)
        self.guidance_spin.setSingleStep(0.5)
        self.guidance_spin.setDecimals(1)
        self.guidance_spin.setValue(5.0)
        self.guidance_spin.setToolTip("Classifier-free guidance: how strongly each step follows the prompt")
        self.sampler_combo = QComboBox()
        self.sampler_combo.setObjectName("sampler")
        self.sampler_combo.addItems(list(SAMPLERS))
        self.sampler_combo.setCurrentText("DPM++ 2M")
        # A double spin box with no decimals: QSpinBox stops at 2**31 - 1, seeds go to 2**32 - 1.
        self.seed_spin = QDoubleSpinBox()
        self.seed_spin.setObjectName("seed")
        self.seed_spin.setDecimals(0)
        self.seed_spin.setRange(0, MAX_SEED)
        self.seed_spin.setGroupSeparatorShown(False)
        self.seed_spin.setToolTip("The same seed and settings draw the same image")
        self.random_check = QCheckBox("Random")
        self.random_check.setObjectName("random_seed")
        self.random_check.setChecked(True)
        self.random_check.setToolTip("Draw a new seed each time; the seed used is shown after the run")
        self.random_check.toggled.connect(self._on_random_toggled)
        seed_row = QHBoxLayout()
        seed_row.addWidget(self.seed_spin, 1)
        seed_row.addWidget(self.random_check)
        sampling_box = QGroupBox("Sampling")
        sampling_form = QFormLayout(sampling_box)
        sampling_form.addRow("Steps", self.steps_spin)
        sampling_form.addRow("Guidance", self.guidance_spin)
        sampling_form.addRow("Sampler", self.sampler_combo)
        sampling_form.addRow("Seed", seed_row)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(prompt_box)
        self.start_box = StartImageBox()  # image to image and inpainting: the start image, its strength and mask
        self.strength_spin, self.mask_blur_spin = self.start_box.strength_spin, self.start_box.mask_blur_spin
        self.fit_combo = self.start_box.fit_combo
        self.start_box.follow_size(self.width_spin, self.height_spin)
        layout.addWidget(self.start_box)
        layout.addWidget(image_box)
        layout.addWidget(sampling_box)
        self.lora_picker = LoraPicker()  # the LoRAs found, each with a checkbox, a weight and its trigger word
        self._few_step_kind: str | None = None  # "lcm" with an LCM-LoRA ticked: see _on_loras_changed
        self.lora_picker.changed.connect(self._on_loras_changed)
        lora_box = QGroupBox("LoRAs")
        QVBoxLayout(lora_box).addWidget(self.lora_picker)
        layout.addWidget(lora_box)
        self.control_rows = ControlRows(lambda: (self.width_spin.value(), self.height_spin.value()))
        self.start_box.changed.connect(lambda: self.control_rows.set_start_image(bool(self.start_box.path())))
        layout.addWidget(self.control_rows)
        self.image_prompt_row = ImagePromptRow()  # an image steering the picture through an IP-Adapter
        layout.addWidget(self.image_prompt_row)
        layout.addStretch(1)
        self._on_random_toggled(True)
        self._apply_model_defaults(DEFAULT_MODEL)

    # ---- the request -----------------------------------------------------------------------------

    def build_request(self) -> GenerationRequest:
        """The request the form describes. Raises RequestError (naming the field) for a bad value."""
        return GenerationRequest(
            prompt=self.prompt_edit.toPlainText().strip(),
            # kept in the box but not sent while the model takes none (switching back brings it back)
            negative_prompt=self.negative_edit.toPlainText().strip() if self.negative_edit.isEnabled() else "",
            width=self.width_spin.value(),
            height=self.height_spin.value(),
            steps=self.steps_spin.value(),
            guidance_scale=round(self.guidance_spin.value(), 2),
            sampler=self.sampler_combo.currentText(),
            seed=None if self.random_check.isChecked() else int(self.seed_spin.value()),
            batch_size=self.batch_spin.value(),
            model=self.model(),
            upscale=self.upscaler() if self.upscale_check.isChecked() else None,
            hires_scale=self.hires_spin.value() if self.hires_spin.value() > 1 else None,
            hires_strength=round(self.hires_strength_spin.value(), 2),
            refiner=self.refiner_choice.refiner(),
            refiner_switch=self.refiner_choice.switch(),
            loras=self.lora_picker.choices(),
            controls=self.control_rows.choices(self.model()),  # read and paired torch-free, or named beside it
            **self.start_box.request_fields(),  # the start image, strength, fit; a painted mask is written now
            **self.image_prompt_row.request_fields(self.model()),  # the adapter read and paired torch-free
        )

    def upscaler(self) -> str:
        """The chosen upscaler: "default" (the model's own) or a file path."""
        value = self.upscaler_combo.currentData()
        return UPSCALE_DEFAULT if value in (None, BROWSE) else str(value)

    def apply_request(self, values: dict) -> list[str]:
        """Fill the form from GenerationRequest fields (a recipe read back from an image, or the last run).
        Fields that are absent keep their value; returns the names of values that could not be used."""
        from desktop_app.gui.form_filling import fill_form

        return fill_form(self, values)

    def model(self) -> str:
        value = self.model_combo.currentData()
        return DEFAULT_MODEL if value in (None, BROWSE) else str(value)

    def show_used_seed(self, seed: int) -> None:
        """After a random-seed run: show the seed that was drawn (untick Random to reuse it)."""
        self.seed_spin.setValue(seed)

    # ---- upscalers -------------------------------------------------------------------------------

    def _fill_upscalers(self) -> None:
        self.upscaler_combo.clear()
        self.upscaler_combo.addItem("Model's own", UPSCALE_DEFAULT)
        for path in model_info.upscaler_files():
            self.upscaler_combo.addItem(path.stem, str(path))
            self.upscaler_combo.setItemData(self.upscaler_combo.count() - 1, str(path),
                                            Qt.ItemDataRole.ToolTipRole)
        self.upscaler_combo.insertSeparator(self.upscaler_combo.count())
        self.upscaler_combo.addItem("Browse file…", BROWSE)
        self._last_upscaler_index = 0

    def select_upscaler(self, choice: str) -> None:
        """Select "default" or an upscaler file (added to the list if new)."""
        if choice == UPSCALE_DEFAULT:
            index = 0
        else:
            path = str(Path(choice).expanduser())
            index = path_index(self.upscaler_combo, path, Path(path).stem)
            self.upscale_check.setEnabled(True)
        self.upscaler_combo.setCurrentIndex(index)
        self._last_upscaler_index = index

    def _on_upscaler_activated(self, index: int) -> None:
        if self.upscaler_combo.itemData(index) == BROWSE:
            path, _ = QFileDialog.getOpenFileName(self, "Choose an upscaler model", "",
                                                  "Upscaler models (*.safetensors *.pth *.pt);;All files (*)")
            if path:
                self.select_upscaler(path)
                self.upscale_check.setChecked(True)
            else:
                self.upscaler_combo.setCurrentIndex(self._last_upscaler_index)
            return
        self._last_upscaler_index = index
        if self.upscale_check.isEnabled():
            self.upscale_check.setChecked(True)

    # ---- models ----------------------------------------------------------------------------------

    def select_model(self, model: str) -> None:
        """Select "default" or a model folder (added to the list if new)."""
        if model == DEFAULT_MODEL:
            index = 0
        else:
            index = path_index(self.model_combo, str(Path(model).expanduser()))
        self.model_combo.setCurrentIndex(index)
        self._last_model_index = index
        self._apply_model_defaults(self.model())
        self.model_changed.emit(self.model())

    def _on_model_activated(self, index: int) -> None:
        if self.model_combo.itemData(index) == BROWSE:
            folder = QFileDialog.getExistingDirectory(self, "Choose a diffusers model folder")
            if folder:
                self.select_model(folder)
            else:
                self.model_combo.setCurrentIndex(self._last_model_index)
            return
        self._last_model_index = index
        self._apply_model_defaults(self.model())
        self.model_changed.emit(self.model())

    def _declared(self, model: str) -> dict:
        """What the shared resolve step (models.resolve) would fill in for this model and the ticked LoRAs:
        the command line uses the same, so the two cannot disagree. Falls back to the request's own defaults
        where the model declares nothing (what the command line's request would hold)."""
        declared = resolve.declared_defaults(model, self.lora_picker.names_checked())
        return declared if model == DEFAULT_MODEL else REQUEST_DEFAULTS | declared

    def _on_loras_changed(self) -> None:
        """An LCM-LoRA ticked or unticked changes the few-step kind: its steps, guidance and sampler follow (the
        model's own come back when it is unticked). Other LoRA changes leave the person's settings alone."""
        kind = few_step.few_step_kind(self.model(), self.lora_picker.names_checked())
        if kind == self._few_step_kind:
            return
        self._few_step_kind = kind
        declared = self._declared(self.model())
        self._set_sampling(declared)

    def _samplers(self) -> list[str]:
        return [self.sampler_combo.itemText(i) for i in range(self.sampler_combo.count())]

    def _offer_samplers(self, names) -> None:
        """Refill the sampler list (the family's own), keeping the choice when it is still offered."""
        if list(names) != self._samplers():
            current = self.sampler_combo.currentText()
            self.sampler_combo.clear()
            self.sampler_combo.addItems(list(names))
            self.sampler_combo.setCurrentText(current if current in names else names[0])

    def _set_sampling(self, defaults: dict) -> None:
        if "steps" in defaults:
            self.steps_spin.setValue(int(defaults["steps"]))
        if "guidance_scale" in defaults:
            self.guidance_spin.setValue(float(defaults["guidance_scale"]))
        if defaults.get("sampler") in self._samplers():
            self.sampler_combo.setCurrentText(defaults["sampler"])

    def _apply_model_defaults(self, model: str) -> None:
        """Use the size limits and defaults the model folder declares, so the form offers what it can draw."""
        info = model_info.model_defaults(model)
        limits = info.get("limits", {})
        negative, samplers, transformer, family = model_info.family_traits(model)  # one read of the folder
        self.lora_picker.set_family(family)  # first: a family without LoRAs sends none, LCM-LoRA included
        self.start_box.set_family(family)  # a family without image to image (or inpainting) sends no start image
        self.control_rows.set_family(family)  # ControlNets on the SD UNets only
        self.image_prompt_row.set_family(family)  # IP-Adapters on SD 1.x, SDXL and Flux.1
        defaults = self._declared(model)  # a Turbo or LCM model (or an LCM-LoRA): its few steps and sampler
        self._offer_samplers(samplers)
        self._few_step_kind = few_step.few_step_kind(model, self.lora_picker.names_checked())
        low = max(MIN_SIZE, int(limits.get("min_size", MIN_SIZE)))
        high = min(MAX_SIZE, int(limits.get("max_size", MAX_SIZE)))
        for spin in (self.width_spin, self.height_spin):
            spin.setRange(low, high)
        if "width" in defaults:
            self.width_spin.setValue(int(defaults["width"]))
        if "height" in defaults:
            self.height_spin.setValue(int(defaults["height"]))
        self._set_sampling(defaults)
        # the 4x upscaler is the model folder's own; a folder that cannot be read yet keeps the choice open
        embedded = model_info.is_embedded(model)  # None: the folder cannot be read (yet)
        readable = embedded is not None
        has_upscaler = defaults.get("upscale") is not None if readable else model == DEFAULT_MODEL
        if not has_upscaler and readable and self.upscaler() == UPSCALE_DEFAULT:
            files = [i for i in range(self.upscaler_combo.count())
                     if self.upscaler_combo.itemData(i) not in (None, BROWSE, UPSCALE_DEFAULT)]
            if files:  # the model has none of its own: offer the first upscaler file instead
                self.upscaler_combo.setCurrentIndex(files[0])
                self._last_upscaler_index = files[0]
        usable = has_upscaler or not readable or self.upscaler() != UPSCALE_DEFAULT
        self.upscale_check.setEnabled(usable)
        self.upscale_check.setChecked(has_upscaler)
        self.upscale_check.setToolTip("Enlarge the result with the chosen upscaler" if usable
                                      else "This model has no upscaler of its own: choose an upscaler file")
        # the hires fix re-draws at a larger size: for Stable Diffusion models, not the one-size embedded model
        hires_ok = embedded is False and not transformer  # the SD UNets only
        self.hires_spin.setEnabled(hires_ok)
        self.hires_strength_spin.setEnabled(hires_ok)
        if not hires_ok:
            self.hires_spin.setValue(1.0)
        self.refiner_choice.set_model(model)
        self.negative_edit.setEnabled(negative)
        self.negative_edit.setToolTip("" if negative else "This model takes no negative prompt (it is not sent)")
        self.show_model_note()

    def show_model_note(self) -> None:
        """Under the model: what it lacks to run, in one line (a transformer file without its components), or
        nothing. The window calls it again when components are named (Models > Components…)."""
        problem = model_info.components_problem(self.model())
        self.model_note.setText(problem)
        self.model_note.setVisible(bool(problem))

    # ---- pointing at a bad value -----------------------------------------------------------------

    def field_label(self, field: str) -> str:
        return FIELD_WIDGETS.get(field, (field.replace("_", " ").capitalize(), ""))[0]

    def mark_field(self, field: str, message: str = "") -> QWidget | None:
        """Outline the widget of a request field in red and focus it (a ControlNet's problem: its line too)."""
        self.clear_marks()
        if field == "controls" and message:
            self.control_rows.show_note(message.removeprefix("controls:").strip())
        if field in IMAGE_PROMPT_FIELD_WIDGETS and message:  # an image or adapter refused: its line too
            self.image_prompt_row.show_note(message)
        attribute = FIELD_WIDGETS.get(field, ("", ""))[1]
        widget = getattr(self, attribute, None) if attribute else None
        if widget is not None:
            widget.setProperty("invalid", True)
            widget.setStyleSheet("border: 1px solid #d9534f;")
            widget.setFocus()
        return widget

    def clear_marks(self) -> None:
        for _, attribute in FIELD_WIDGETS.values():
            widget = getattr(self, attribute)
            if widget.property("invalid"):
                widget.setProperty("invalid", False)
                widget.setStyleSheet("")

    def _on_random_toggled(self, checked: bool) -> None:
        self.seed_spin.setEnabled(not checked)

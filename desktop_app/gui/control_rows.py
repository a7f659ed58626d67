"""The form's ControlNet section (issue 17): empty until "Add ControlNet"; each row a ControlNet folder (the
ones in ``<models>/controlnet/`` and Browse…), its image, weight, the share of the steps it steers (start, end),
its preprocessor (none / canny / lineart / depth / pose) with a small preview of what the ControlNet reads, and
Remove.

Offered for the families the engine runs ControlNets on (models/families.py CONTROLNETS: SD 1.x, 2.x, SDXL, the
embedded model, SD3 and Flux.1); with a start image (image to image, inpainting) for the SD families and Flux.1
(SD3's ControlNets are text to image: engine/control_job.py).
Torch-free: folders are read by ``models/controlnet_folder.py``, the Canny preview by ``engine/control_images.py``
(Pillow and OpenCV), imported when a preview is drawn; a depth map or a pose needs a model (torch), so the row
says "depth: made when the run starts" (or pose) instead of drawing one."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from desktop_app.engine.request import CONTROL_PREPROCESSORS, MAX_CONTROL_WEIGHT, MAX_CONTROLS, ControlChoice
from desktop_app.errors import ModelError, RequestError, printable
from desktop_app.models import controlnet_folder
from desktop_app.models.families import CONTROLNETS

BROWSE = "\x00browse"
CONTROL_FAMILIES = tuple(CONTROLNETS)  # engine/control_job.py: the families' ControlNet pipelines
THUMB = 56  # the preview's side in pixels
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff);;All files (*)"
ADD_TIP = f"Steer the picture with an image: edges, depth, a pose (up to {MAX_CONTROLS})"
START_IMAGE_LINE = ("ControlNets take a start image only with Stable Diffusion 1.x, 2.x, SDXL and Flux.1 models: "
                    "clear the start image to use them with this model")
# the families whose ControlNets also run image to image and inpainting (engine/control_job.IMAGE_CONTROLNETS)
_IMAGE_CONTROLNETS = ("StableDiffusionControlNetPipeline", "StableDiffusionXLControlNetPipeline",
                      "FluxControlNetPipeline")
START_IMAGE_FAMILIES = tuple(key for key, pipeline in CONTROLNETS.items() if pipeline in _IMAGE_CONTROLNETS)


def library_controlnets() -> list[Path]:
    """The ControlNet folders in ``<models>/controlnet/`` (folders with a config.json), by name."""
    folder = controlnet_folder.controlnets_dir()
    try:
        return sorted((p for p in folder.iterdir() if p.is_dir() and (p / "config.json").is_file()),
                      key=lambda p: p.name.lower())
    except OSError:
        return []


def family_line(family: str) -> str:
    """Why the section is off for ``family`` (a models/families.py key), "" when ControlNets run on it."""
    if family in CONTROL_FAMILIES or family == "unknown":
        return ""
    return f"{controlnet_folder.CONTROL_FAMILIES_LINE}; this model is {controlnet_folder.family_name(family)}"


def choose_folder(parent: QWidget) -> str:
    return QFileDialog.getExistingDirectory(parent, "Choose a ControlNet folder (diffusers)")


def choose_image(parent: QWidget) -> str:
    path, _ = QFileDialog.getOpenFileName(parent, "Choose the ControlNet's image", "", IMAGE_FILTER)
    return path


def draw_image(parent: QWidget, size: tuple[int, int], start: str | None):
    from desktop_app.gui.scribble_dialog import draw_scribble

    return draw_scribble(parent, size, start)


def _spin(name: str, low: float, high: float, value: float, tip: str) -> QDoubleSpinBox:
    spin = QDoubleSpinBox()
    spin.setObjectName(name)
    spin.setRange(low, high)
    spin.setSingleStep(0.05)
    spin.setDecimals(2)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


class ControlRow(QFrame):
    """One ControlNet: folder, image, weight, start, end, preprocessor, preview, Remove."""

    remove_requested = Signal(object)  # this row

    folder_dialog = staticmethod(choose_folder)  # replaceable in tests
    image_dialog = staticmethod(choose_image)
    draw_dialog = staticmethod(draw_image)

    def __init__(self, size_of=lambda: (64, 64), parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("control_row")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self._size_of = size_of  # the form's (width, height): the preview is fitted as the run's image is
        self.image_path = ""
        self.folder_combo = QComboBox()
        self.folder_combo.setObjectName("control_folder")
        self.folder_combo.setToolTip("The ControlNet: a folder in the models folder's controlnet/, or Browse…")
        self.folder_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.folder_combo.setMinimumContentsLength(8)
        self.folder_combo.activated.connect(self._on_folder_activated)
        self._fill_folders()
        self.image_button = QPushButton("Open…")
        self.image_button.setObjectName("control_image_open")
        self.image_button.setToolTip("The image the ControlNet follows (an edge map, depth map, pose, or a "
                                     "picture to take Canny edges from)")
        self.image_button.clicked.connect(self._on_open_image)
        self.draw_button = QPushButton("Draw…")
        self.draw_button.setObjectName("control_image_draw")
        self.draw_button.setToolTip("Draw a scribble (white lines on black) at the picture's size as the image")
        self.draw_button.clicked.connect(self._on_draw)
        self.image_label = QLabel("no image")
        self.image_label.setMinimumWidth(16)  # the name shrinks (its tooltip has the path): the form stays narrow
        self.image_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.image_label.setObjectName("control_image_name")
        self.thumb = QLabel()
        self.thumb.setObjectName("control_preview")
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setStyleSheet("background: #111; color: #888;")
        self.thumb.setToolTip("What the ControlNet reads, at the image's size")
        self.weight_spin = _spin("control_weight", 0.0, MAX_CONTROL_WEIGHT, 1.0,
                                 "How strongly it steers (0: not at all)")
        self.start_spin = _spin("control_start", 0.0, 1.0, 0.0, "The share of the steps at which it starts")
        self.end_spin = _spin("control_end", 0.0, 1.0, 1.0, "The share of the steps at which it stops")
        self.preprocessor_combo = QComboBox()
        self.preprocessor_combo.setObjectName("control_preprocessor")
        self.preprocessor_combo.addItems(list(CONTROL_PREPROCESSORS))
        self.preprocessor_combo.setToolTip("none: the image as it is (an edge or depth map made elsewhere); "
                                           "canny: its edges, found now; lineart: its dark strokes as "
                                           "white lines; depth: its depth map, by the depth model in "
                                           "models/preprocessors/depth/; pose: the skeleton found by the "
                                           "ViTPose model in models/preprocessors/pose/ (both made when the "
                                           "run starts)")
        self.preprocessor_combo.currentTextChanged.connect(lambda _text: self.show_preview())
        self.remove_button = QPushButton("Remove")
        self.remove_button.setObjectName("control_remove")
        self.remove_button.clicked.connect(lambda: self.remove_requested.emit(self))
        grid = QGridLayout(self)
        grid.setContentsMargins(4, 4, 4, 4)
        grid.addWidget(self.folder_combo, 0, 0, 1, 4)
        grid.addWidget(self.remove_button, 0, 4)
        image_row = QHBoxLayout()
        image_row.addWidget(self.image_button)
        image_row.addWidget(self.draw_button)
        image_row.addWidget(self.image_label, 1)
        image_row.addWidget(self.preprocessor_combo)
        grid.addLayout(image_row, 1, 0, 1, 4)
        grid.addWidget(self.thumb, 1, 4, 2, 1)
        numbers = QHBoxLayout()
        for label, spin in (("weight", self.weight_spin), ("from", self.start_spin), ("to", self.end_spin)):
            numbers.addWidget(QLabel(label))
            numbers.addWidget(spin, 1)
        grid.addLayout(numbers, 2, 0, 1, 4)

    # ---- the folder ------------------------------------------------------------------------------

    def _fill_folders(self) -> None:
        self.folder_combo.clear()
        for path in library_controlnets():
            self.folder_combo.addItem(path.name, path.name)
            self.folder_combo.setItemData(self.folder_combo.count() - 1, str(path), Qt.ItemDataRole.ToolTipRole)
        if self.folder_combo.count():
            self.folder_combo.insertSeparator(self.folder_combo.count())
        self.folder_combo.addItem("Browse…", BROWSE)
        self._last_folder = 0

    def model(self) -> str:
        value = self.folder_combo.currentData()
        return "" if value in (None, BROWSE) else str(value)

    def set_model(self, model: str) -> None:
        """Select ``model`` (a name in the controlnet folder, or a folder path), added to the list if new."""
        index = self.folder_combo.findData(model)
        if index < 0:
            index = 0
            shown = Path(model).name or model
            self.folder_combo.insertItem(0, shown, model)
            self.folder_combo.setItemData(0, model, Qt.ItemDataRole.ToolTipRole)
        self.folder_combo.setCurrentIndex(index)
        self._last_folder = index

    def _on_folder_activated(self, index: int) -> None:
        if self.folder_combo.itemData(index) != BROWSE:
            self._last_folder = index
            return
        folder = self.folder_dialog(self)
        if folder:
            self.set_model(str(Path(folder).expanduser()))
        else:
            self.folder_combo.setCurrentIndex(self._last_folder)

    # ---- the image -------------------------------------------------------------------------------

    def _on_open_image(self) -> None:
        path = self.image_dialog(self)
        if path:
            self.set_image(path)

    def _on_draw(self) -> None:
        from desktop_app.gui.scribble_dialog import is_scribble

        path, problem = self.draw_dialog(self, self._size_of(), self.image_path if is_scribble(self.image_path)
                                         else None)
        if path is not None:
            self.preprocessor_combo.setCurrentText("none")  # a scribble is what the ControlNet reads
            self.set_image(str(path))
        elif problem:
            self.image_label.setText("drawing not saved")
            self.image_label.setToolTip(problem)

    def set_image(self, path: str) -> None:
        self.image_path = str(path)
        self.image_label.setText(Path(path).name if path else "no image")
        self.image_label.setToolTip(str(path))
        self.show_preview()

    def show_preview(self) -> None:
        """The control image as the ControlNet reads it (Canny edges, or the image itself), small; for a
        preprocessor that reads a model (depth, pose) a line saying it is made when the run starts."""
        if not self.image_path:
            self.thumb.clear()
            return
        from desktop_app.engine.control_images import MODEL_PREPROCESSORS, control_image  # no torch

        preprocessor = self.preprocessor_combo.currentText()
        if preprocessor in MODEL_PREPROCESSORS:
            self.thumb.clear()
            self.thumb.setWordWrap(True)
            self.thumb.setText(f"{preprocessor}: made when the run starts")
            self.thumb.setToolTip(f"The {preprocessor} map is made by its model when the run starts")
            return

        width, height = self._size_of()
        scale = THUMB / max(width, height)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        try:
            image, _sha = control_image(self.image_path, preprocessor, size)
        except RequestError as exc:
            self.thumb.setText("?")
            self.thumb.setToolTip(str(exc))
            return
        data = image.convert("RGB").tobytes()
        qimage = QImage(data, image.width, image.height, image.width * 3, QImage.Format.Format_RGB888).copy()
        self.thumb.setPixmap(QPixmap.fromImage(qimage))
        self.thumb.setToolTip("What the ControlNet reads, at the image's size")

    # ---- the choice ------------------------------------------------------------------------------

    def choice(self) -> ControlChoice:
        """This row as the request's ControlChoice. RequestError ("controls") naming what is wrong: no folder,
        a folder that is no ControlNet (read torch-free now), no image."""
        model = self.model()
        if not model:
            raise RequestError("controls", "choose a ControlNet folder for each ControlNet row (or remove it)")
        try:
            controlnet_folder.read_controlnet(model)
        except ModelError as exc:
            raise RequestError("controls", str(exc)) from None
        return ControlChoice(model=model, image=self.image_path, weight=round(self.weight_spin.value(), 2),
                             start=round(self.start_spin.value(), 2), end=round(self.end_spin.value(), 2),
                             preprocessor=self.preprocessor_combo.currentText())

    def apply(self, values: dict) -> list[str]:
        """Take a recipe's control (a dict of ControlChoice fields); returns what is missing here, named."""
        missing = []
        model = str(values.get("model") or "")
        if model:
            self.set_model(model)
            try:
                controlnet_folder.resolve_controlnet(model)
            except ModelError:
                missing.append(f"ControlNet {printable(model, 80)}")
        for key, spin in (("weight", self.weight_spin), ("start", self.start_spin), ("end", self.end_spin)):
            if isinstance(values.get(key), (int, float)):
                spin.setValue(float(values[key]))
        if values.get("preprocessor") in CONTROL_PREPROCESSORS:
            self.preprocessor_combo.setCurrentText(values["preprocessor"])
        image = str(values.get("image") or "")
        if image and Path(image).expanduser().is_file():
            self.set_image(str(Path(image).expanduser()))
        elif image:
            missing.append(f"image {printable(Path(image).name, 80)}")
        return missing


class ControlRows(QGroupBox):
    """The ControlNet section: its rows, "Add ControlNet", and one line saying why it is off or what is wrong."""

    changed = Signal()

    def __init__(self, size_of=lambda: (64, 64), parent: QWidget | None = None):
        super().__init__("ControlNet", parent)
        self.setObjectName("control_rows")
        self._size_of = size_of
        self.rows: list[ControlRow] = []
        self._family_line = ""
        self._family = "unknown"
        self._start_image = False
        self._rows_layout = QVBoxLayout()
        self._rows_layout.setContentsMargins(0, 0, 0, 0)
        self.add_button = QPushButton("Add ControlNet")
        self.add_button.setObjectName("control_add")
        self.add_button.setToolTip(ADD_TIP)
        self.add_button.clicked.connect(lambda: self.add_row())
        self.note = QLabel()  # why the section is off, what a recipe named that is missing, or a refused value
        self.note.setObjectName("control_note")
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note.hide()
        layout = QVBoxLayout(self)
        layout.addLayout(self._rows_layout)
        layout.addWidget(self.add_button, 0, Qt.AlignmentFlag.AlignLeft)
        layout.addWidget(self.note)

    # ---- rows ------------------------------------------------------------------------------------

    def add_row(self) -> ControlRow:
        row = ControlRow(self._size_of)
        row.remove_requested.connect(self.remove_row)
        self.rows.append(row)
        self._rows_layout.addWidget(row)
        self._update()
        self.changed.emit()
        return row

    def remove_row(self, row: ControlRow) -> None:
        if row in self.rows:
            self.rows.remove(row)
            self._rows_layout.removeWidget(row)
            row.deleteLater()
            self._update()
            self.changed.emit()

    def clear(self) -> None:
        for row in list(self.rows):
            self.remove_row(row)

    def refresh_previews(self) -> None:
        """The form's size changed: the previews are fitted again."""
        for row in self.rows:
            row.show_preview()

    # ---- when it is offered ----------------------------------------------------------------------

    def set_family(self, family: str) -> None:
        self._family_line = family_line(family)
        self._family = family
        self._update()

    def set_start_image(self, present: bool) -> None:
        self._start_image = bool(present)
        self._update()

    def usable(self) -> bool:
        return not self._family_line and not self._start_line()

    def _start_line(self) -> str:
        """Why a start image turns the section off for this family ("" where it runs, and "unknown")."""
        refused = self._start_image and self._family not in (*START_IMAGE_FAMILIES, "unknown")
        return START_IMAGE_LINE if refused else ""

    def _update(self) -> None:
        why = self._family_line or self._start_line()
        for row in self.rows:
            row.setEnabled(not why)
            row.setToolTip(why)
        self.add_button.setEnabled(not why and len(self.rows) < MAX_CONTROLS)
        self.add_button.setToolTip(why or ADD_TIP)
        self.setToolTip(why)
        self.show_note(why if self.rows or self._family_line else "", error=False)

    def show_note(self, text: str, error: bool = True) -> None:
        """One line under the rows: a refused value (red), or why the section is off."""
        self.note.setText(text)
        self.note.setStyleSheet("color: #d9534f;" if error else "color: palette(mid);")
        self.note.setVisible(bool(text))

    # ---- the request -----------------------------------------------------------------------------

    def choices(self, model: str = "") -> tuple[ControlChoice, ...]:
        """The rows as the request's controls; none while the section is off (the rows are kept). Each folder is
        read, and checked against ``model``'s UNet when that can be read, torch-free now: RequestError
        ("controls"), shown under the rows, for a missing or wrong folder, a ControlNet of another family, or a
        row without its image."""
        self._update()  # the last refused value's line goes
        if not self.usable():
            return ()
        try:
            found = tuple(row.choice() for row in self.rows)
            if found and model:
                self._check_pairing(found, model)
        except RequestError as exc:
            self.show_note(str(exc).removeprefix("controls:").strip())
            raise
        return found

    @staticmethod
    def _check_pairing(found, model: str) -> None:
        try:
            family, unet = controlnet_folder.model_denoiser(model)
        except (ModelError, OSError):
            return  # the model's own problem: the run names it
        for control in found:
            try:
                info = controlnet_folder.read_controlnet(control.model)
                controlnet_folder.check_pairing(info, family, unet, Path(model).name or model)
            except ModelError as exc:
                raise RequestError("controls", str(exc)) from None

    def setStyleSheet(self, sheet: str) -> None:
        """The form outlines a refused field with a bare rule: here the box takes it, not every widget in it."""
        super().setStyleSheet(f"QGroupBox#control_rows {{ {sheet} }}" if sheet and "{" not in sheet else sheet)

    def apply(self, controls) -> list[str]:
        """Restore the rows of a recipe's "controls" (a list of dicts); returns the ControlNet folders and images
        missing here, named (and shown in one line under the rows). Empty controls clear the rows."""
        self.clear()
        missing = []
        for values in controls if isinstance(controls, (list, tuple)) else ():
            if isinstance(values, dict) and len(self.rows) < MAX_CONTROLS:
                missing += self.add_row().apply(values)
        if missing:
            self.show_note(f"Not found here: {', '.join(missing)}")
        return missing

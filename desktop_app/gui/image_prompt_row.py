"""The form's image prompt (issue 17): an image whose look steers the picture through an IP-Adapter, its weight
(0: the plain picture, up to MAX_IMAGE_PROMPT_WEIGHT), and the adapter (an entry of the models folder's
``ip-adapter/``, or a file or folder browsed to).

Offered for the families the engine runs IP-Adapters on (SD 1.x, SDXL and Flux.1); off, with a tooltip naming the
family, for the others (the embedded model included): what is set is then kept but not sent, as the ControlNet
rows are.
The adapter is read and paired with the model torch-free when Generate is pressed (models/ip_adapter_files.py),
so a bad one is one line beside the row, never a traceback."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QLabel,
    QPushButton,
    QWidget,
)

from desktop_app.engine.request import DEFAULT_IMAGE_PROMPT_WEIGHT, MAX_IMAGE_PROMPT_WEIGHT
from desktop_app.errors import ModelError, RequestError, printable
from desktop_app.gui.drops import FileDrops
from desktop_app.models import ip_adapter_files, model_folder

IMAGE_PROMPT_FAMILIES = ip_adapter_files.IMAGE_PROMPT_FAMILIES  # engine/image_prompt.py: SD 1.x, SDXL, Flux.1
BROWSE_FILE, BROWSE_FOLDER = "\x00browse-file", "\x00browse-folder"
THUMB = 56
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff);;All files (*)"
ROW_TIP = "An image whose look steers the picture (IP-Adapter): open or drop an image, choose the adapter"
# request field -> (form label, widget attribute of the form) for pointing at a bad value
IMAGE_PROMPT_FIELD_WIDGETS = {
    "image_prompt": ("Image prompt", "image_prompt_row"),
    "image_prompt_weight": ("Image prompt", "image_prompt_row"),
    "ip_adapter": ("Image prompt", "image_prompt_row"),
}


def library_adapters() -> list[tuple[str, str]]:
    """(shown, value) for each IP-Adapter in ``<models>/ip-adapter/``: a .safetensors file or a folder holding one
    goes by its name (what ``resolve_adapter`` looks up); a folder holding several, each file by its path."""
    folder = ip_adapter_files.adapters_dir()
    try:
        entries = sorted(folder.iterdir(), key=lambda p: p.name.lower())
    except OSError:
        return []
    found = []
    for path in entries:
        if path.is_file() and path.suffix.lower() == ".safetensors":
            found.append((path.stem, path.name))
        elif path.is_dir() and path.name != ip_adapter_files.ENCODER:
            files = sorted(p for p in path.glob("*.safetensors") if ip_adapter_files.is_adapter_name(p.name))
            if len(files) == 1:
                found.append((path.name, path.name))
            found += [(f"{path.name}/{p.stem}", str(p)) for p in files] if len(files) > 1 else []
    return found


def family_line(family: str) -> str:
    """Why the row is off for ``family`` (a models/families.py key), "" when image prompts run on it."""
    if family in IMAGE_PROMPT_FAMILIES or family == "unknown":
        return ""
    return (f"Image prompts (IP-Adapter) run on {ip_adapter_files.RUN_ON} models here; this model is "
            f"{ip_adapter_files.family_name(family)}")


def choose_image(parent: QWidget) -> str:
    path, _ = QFileDialog.getOpenFileName(parent, "Choose the image prompt", "", IMAGE_FILTER)
    return path


def choose_adapter_file(parent: QWidget) -> str:
    path, _ = QFileDialog.getOpenFileName(parent, "Choose an IP-Adapter (ip-adapter*.safetensors)", "",
                                          "IP-Adapters (*.safetensors);;All files (*)")
    return path


def choose_adapter_folder(parent: QWidget) -> str:
    return QFileDialog.getExistingDirectory(parent, "Choose an IP-Adapter folder (one adapter and image_encoder/)")


class ImagePromptRow(QGroupBox):
    """The image (Open…, a drop, Clear) with a thumbnail, the weight, the adapter, and one line under them."""

    changed = Signal()

    image_dialog = staticmethod(choose_image)  # replaceable in tests
    file_dialog = staticmethod(choose_adapter_file)
    folder_dialog = staticmethod(choose_adapter_folder)

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Image prompt", parent)
        self.setObjectName("image_prompt_row")
        self.setToolTip(ROW_TIP)
        self.image_path = ""
        self._family_line = ""
        self.image_button = QPushButton("Open…")
        self.image_button.setObjectName("image_prompt_open")
        self.image_button.setToolTip("The image whose look, colours and subject steer the picture (or drop one "
                                     "here)")
        self.image_button.clicked.connect(self._on_open_image)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setObjectName("image_prompt_clear")
        self.clear_button.setToolTip("No image prompt")
        self.clear_button.clicked.connect(self.clear_image)
        self.image_label = QLabel("no image")
        self.image_label.setObjectName("image_prompt_name")
        self.thumb = QLabel()
        self.thumb.setObjectName("image_prompt_preview")
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setStyleSheet("background: #111; color: #888;")
        self.weight_spin = QDoubleSpinBox()
        self.weight_spin.setObjectName("image_prompt_weight")
        self.weight_spin.setRange(0.0, MAX_IMAGE_PROMPT_WEIGHT)
        self.weight_spin.setSingleStep(0.05)
        self.weight_spin.setDecimals(2)
        self.weight_spin.setValue(DEFAULT_IMAGE_PROMPT_WEIGHT)
        self.weight_spin.setToolTip("How strongly the image steers (0: not at all; about 0.5 beside a prompt)")
        self.adapter_combo = QComboBox()
        self.adapter_combo.setObjectName("ip_adapter")
        self.adapter_combo.setToolTip("The IP-Adapter: one in the models folder's ip-adapter/, or Browse… (an "
                                      "ip-adapter*.safetensors with its image_encoder/ beside it, as h94 lays "
                                      "them out; for Flux.1 XLabs' ip_adapter.safetensors)")
        self.adapter_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.adapter_combo.setMinimumContentsLength(8)
        self.adapter_combo.activated.connect(self._on_adapter_activated)
        self._fill_adapters()
        self.note = QLabel()  # why the row is off, what a recipe named that is missing, or a refused adapter
        self.note.setObjectName("image_prompt_note")
        self.note.setWordWrap(True)
        self.note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.note.hide()
        grid = QGridLayout(self)
        grid.setContentsMargins(4, 4, 4, 4)
        grid.addWidget(self.image_button, 0, 0)
        grid.addWidget(self.image_label, 0, 1, 1, 2)
        grid.addWidget(self.clear_button, 0, 3)
        grid.addWidget(self.thumb, 0, 4, 2, 1)
        grid.addWidget(QLabel("weight"), 1, 0)
        grid.addWidget(self.weight_spin, 1, 1)
        grid.addWidget(self.adapter_combo, 1, 2, 1, 2)
        grid.addWidget(self.note, 2, 0, 1, 5)
        grid.setColumnStretch(2, 1)
        FileDrops(self).dropped.connect(lambda path: self.set_image(path) if self.usable() else None)

    # ---- the image -------------------------------------------------------------------------------

    def _on_open_image(self) -> None:
        path = self.image_dialog(self)
        if path:
            self.set_image(path)

    def set_image(self, path) -> None:
        self.image_path = str(Path(str(path)).expanduser()) if path else ""
        self.image_label.setText(Path(self.image_path).name if self.image_path else "no image")
        self.image_label.setToolTip(self.image_path)
        pixmap = QPixmap(self.image_path) if self.image_path else QPixmap()
        if pixmap.isNull():
            self.thumb.setText("?" if self.image_path else "")
        else:
            self.thumb.setPixmap(pixmap.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                               Qt.TransformationMode.SmoothTransformation))
        self.clear_button.setEnabled(bool(self.image_path))
        self.changed.emit()

    def clear_image(self) -> None:
        self.thumb.clear()
        self.set_image("")

    # ---- the adapter -----------------------------------------------------------------------------

    def _fill_adapters(self) -> None:
        self.adapter_combo.clear()
        entries = library_adapters()
        if not entries:  # nothing chosen yet: Browse… is one click away
            self.adapter_combo.addItem("none in ip-adapter/", "")
            self.adapter_combo.setItemData(0, str(ip_adapter_files.adapters_dir()), Qt.ItemDataRole.ToolTipRole)
        for shown, value in entries:
            self.adapter_combo.addItem(shown, value)
            self.adapter_combo.setItemData(self.adapter_combo.count() - 1, value, Qt.ItemDataRole.ToolTipRole)
        self.adapter_combo.insertSeparator(self.adapter_combo.count())
        self.adapter_combo.addItem("Browse file…", BROWSE_FILE)
        self.adapter_combo.addItem("Browse folder…", BROWSE_FOLDER)
        self._last_adapter = 0

    def adapter(self) -> str:
        value = self.adapter_combo.currentData()
        return "" if value in (None, BROWSE_FILE, BROWSE_FOLDER) else str(value)

    def set_adapter(self, adapter: str) -> None:
        """Select ``adapter`` (a name in ip-adapter/, or a file or folder path), added to the list if new."""
        index = self.adapter_combo.findData(adapter)
        if index < 0:
            index = 0
            self.adapter_combo.insertItem(0, Path(adapter).stem or adapter, adapter)
            self.adapter_combo.setItemData(0, adapter, Qt.ItemDataRole.ToolTipRole)
        self.adapter_combo.setCurrentIndex(index)
        self._last_adapter = index

    def _on_adapter_activated(self, index: int) -> None:
        value = self.adapter_combo.itemData(index)
        if value not in (BROWSE_FILE, BROWSE_FOLDER):
            self._last_adapter = index
            return
        chosen = (self.file_dialog if value == BROWSE_FILE else self.folder_dialog)(self)
        if chosen:
            self.set_adapter(str(Path(chosen).expanduser()))
        else:
            self.adapter_combo.setCurrentIndex(self._last_adapter)

    # ---- when it is offered ----------------------------------------------------------------------

    def set_family(self, family: str) -> None:
        self._family_line = family_line(family)
        self._update()

    def usable(self) -> bool:
        return not self._family_line

    def _update(self) -> None:
        why = self._family_line
        for widget in (self.image_button, self.clear_button, self.image_label, self.thumb, self.weight_spin,
                       self.adapter_combo):
            widget.setEnabled(not why)
        self.clear_button.setEnabled(not why and bool(self.image_path))
        self.setToolTip(why or ROW_TIP)
        self.setAcceptDrops(not why)
        self.show_note(why, error=False)

    def show_note(self, text: str, error: bool = True) -> None:
        """One line under the row: a refused adapter or image (red), or why the row is off."""
        for field in ("Image prompt", *IMAGE_PROMPT_FIELD_WIDGETS):
            text = text.removeprefix(f"{field}:").strip()
        self.note.setText(text)
        self.note.setStyleSheet("color: #d9534f;" if error else "color: palette(mid);")
        self.note.setVisible(bool(text))

    def setStyleSheet(self, sheet: str) -> None:
        """The form outlines a refused field with a bare rule: here the box takes it, not every widget in it."""
        super().setStyleSheet(f"QGroupBox#image_prompt_row {{ {sheet} }}" if sheet and "{" not in sheet else sheet)

    # ---- the request -----------------------------------------------------------------------------

    def request_fields(self, model: str = "") -> dict:
        """The request's image prompt fields ({} without an image, or while the row is off: kept, not sent).
        The adapter is read, and paired with ``model``'s UNet when that can be read, torch-free now:
        RequestError ("ip_adapter"), shown under the row, for none chosen, a missing or damaged adapter, or one
        of another family."""
        self._update()  # the last refused value's line goes
        if not self.usable() or not self.image_path:
            return {}
        adapter = self.adapter()
        try:
            if not adapter:
                raise ModelError("choose its IP-Adapter (one in the models folder's ip-adapter/, or Browse…), "
                                 "or Clear the image")
            info = ip_adapter_files.read_adapter(adapter)
            self._check_pairing(info, model)
        except ModelError as exc:
            self.show_note(str(exc))
            raise RequestError("ip_adapter", str(exc)) from None
        return {"image_prompt": self.image_path, "image_prompt_weight": round(self.weight_spin.value(), 2),
                "ip_adapter": adapter}

    @staticmethod
    def _check_pairing(info, model: str) -> None:
        if not model:
            return
        from desktop_app.models.controlnet_folder import model_denoiser

        try:
            family, denoiser = model_denoiser(model)
        except (ModelError, OSError):
            return  # the model's own problem: the run names it
        ip_adapter_files.check_pairing(info, family, denoiser, model_folder.display_name(model))

    def apply(self, values: dict) -> list[str]:
        """Take a recipe's image prompt (its "image_prompt", "image_prompt_weight", "ip_adapter"); returns the
        image and adapter missing here, named (and shown in one line under the row). A recipe without an image
        prompt clears the image; one that says nothing of it leaves the row alone."""
        if "image_prompt" not in values:
            return []
        missing = []
        weight = values.get("image_prompt_weight")
        if isinstance(weight, (int, float)) and not isinstance(weight, bool) and \
                0 <= weight <= MAX_IMAGE_PROMPT_WEIGHT:
            self.weight_spin.setValue(float(weight))
        adapter = str(values.get("ip_adapter") or "")
        if adapter:
            self.set_adapter(adapter)
            try:
                ip_adapter_files.resolve_adapter(adapter)
            except ModelError:
                missing.append(f"IP-Adapter {printable(adapter, 120)}")
        image = str(values.get("image_prompt") or "")
        if image and Path(image).expanduser().is_file():
            self.set_image(image)
        else:
            self.clear_image()
            if image:
                missing.append(f"image prompt {printable(Path(image).name, 80)}")
        self._update()
        if missing:
            self.show_note(f"Not found here: {', '.join(missing)}")
        return missing

"""The models panel: the user's model library as a table (name, kind, family, size, source), with Add file…,
Add folder…, Download…, Remove, and Use (make a checkpoint or diffusers model the form's model).

Everything here is torch-free (model_library inspects file headers only). Errors show in the panel as one
line, never as a traceback.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from desktop_app.models import model_library
from desktop_app.models.display import format_size
from desktop_app.errors import ModelError
from desktop_app.gui.buttons import action_button
from desktop_app.errors import printable

COLUMNS = ("Name", "Kind", "Family", "Size", "Source")
ENTRY_ROLE = Qt.ItemDataRole.UserRole
SCANNED = "scanned: "


def choose_file(parent: QWidget) -> str:
    path, _ = QFileDialog.getOpenFileName(parent, "Add a model file", "",
                                          "Models (*.safetensors);;All files (*)")
    return path


def choose_folder(parent: QWidget) -> str:
    return QFileDialog.getExistingDirectory(parent, "Add a diffusers model, or another tool's model folder")


def ask_sd2_prediction_type(parent: QWidget, file_name: str) -> str | None:
    """Ask which SD 2.x flavour a checkpoint is: "v" (768, v-prediction), "epsilon" (512 base), None: cancel."""
    box = QMessageBox(QMessageBox.Icon.Question, "Stable Diffusion 2.x checkpoint",
                      f"{file_name} is a Stable Diffusion 2.x checkpoint. Its tensors cannot tell which kind:",
                      QMessageBox.StandardButton.Cancel, parent)
    box.setInformativeText("768 × 768 models (SD 2.0-v, 2.1 and most fine-tunes) predict v; the 512 × 512 base "
                           "models predict noise (epsilon). A wrong choice gives noise or grey images; you can "
                           "remove the model and add it again.")
    v = box.addButton("768, v-prediction", QMessageBox.ButtonRole.AcceptRole)
    eps = box.addButton("512 base, epsilon", QMessageBox.ButtonRole.AcceptRole)
    box.setDefaultButton(v)
    box.exec()
    return {v: "v", eps: "epsilon"}.get(box.clickedButton())


class ModelsPanel(QWidget):
    """The library as a table. Its intents: ``use_requested(model)`` (the window sets the form's model) and
    ``changed`` (an entry was added or removed: lists of models, refiners and LoRAs elsewhere refresh)."""

    use_requested = Signal(str)  # the path (or "default") of the model to generate with
    changed = Signal()

    # replaceable in tests: no native dialogs there
    file_dialog = staticmethod(choose_file)
    folder_dialog = staticmethod(choose_folder)
    prediction_dialog = staticmethod(ask_sd2_prediction_type)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("models_panel")
        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setObjectName("models_table")
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.itemSelectionChanged.connect(self._update_buttons)
        self.table.itemDoubleClicked.connect(lambda _item: self.use_selected())

        self.add_file_button = action_button(
            "Add file…", "Register a .safetensors checkpoint, LoRA, embedding or upscaler (the file stays "
            "where it is)", lambda: self.add_path(self.file_dialog(self)))
        self.add_folder_button = action_button(
            "Add folder…", "A diffusers model folder, or the model folder of AUTOMATIC1111 or ComfyUI (scanned, "
            "not copied)", lambda: self.add_path(self.folder_dialog(self)))
        self.download_button = action_button(
            "Download…", "Download a diffusers model by Hugging Face repo id (needs a network)",
            self.open_download)
        self.remove_button = action_button(
            "Remove", "Take the selected entry out of the library (the file is not deleted)", self.remove_selected)
        self.use_button = action_button("Use", "Generate with the selected model", self.use_selected)
        self.message = QLabel()
        self.message.setObjectName("models_message")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        buttons = QHBoxLayout()
        for button in (self.add_file_button, self.add_folder_button, self.download_button, self.remove_button,
                       self.use_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.table)
        layout.addLayout(buttons)
        layout.addWidget(self.message)
        self.refresh(hf_cache=False)  # at once; the Hugging Face cache (a slower scan) once the window shows
        QTimer.singleShot(0, self, self.refresh)

    # ---- what is shown ---------------------------------------------------------------------------

    def refresh(self, hf_cache: bool = True) -> None:
        skipped: list = []
        try:
            entries = model_library.entries(hf_cache=hf_cache, skipped=skipped)
        except ModelError as exc:
            self.show_error(str(exc))
            entries = []
        self.skipped = skipped
        if skipped:  # a damaged file is left out and named, never fatal to the rest
            more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
            self.show_info(f"{len(skipped)} file(s) left out because they cannot be used: "
                           f"{printable(skipped[0][1], 300)}{more}")
        try:
            self._folders = set(model_library.folders())
        except ModelError:
            self._folders = set()
        self.table.setRowCount(len(entries))
        for row, entry in enumerate(entries):
            cells = (printable(entry.name), entry.kind, printable(entry.family_cell, 40), format_size(entry.size),
                     printable(entry.source, 400))
            for column, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(ENTRY_ROLE, entry)
                path = printable(entry.path, 400)
                item.setToolTip(f"{path}\n{printable(entry.details, 400)}" if entry.details else path)
                self.table.setItem(row, column, item)
        self._update_buttons()

    def names(self) -> list[str]:
        return [self.table.item(row, 0).data(ENTRY_ROLE).name for row in range(self.table.rowCount())]

    def selected(self) -> model_library.Entry | None:
        rows = self.table.selectionModel().selectedRows()
        if not rows:
            return None
        return self.table.item(rows[0].row(), 0).data(ENTRY_ROLE)

    def select(self, name: str) -> None:
        for row, text in enumerate(self.names()):
            if text == name:
                self.table.selectRow(row)
                return

    def show_error(self, text: str) -> None:
        self.message.setProperty("error", True)
        self.message.setStyleSheet("color: #d9534f;")
        self.message.setText(" ".join(text.split()))

    def show_info(self, text: str) -> None:
        self.message.setProperty("error", False)
        self.message.setStyleSheet("")
        self.message.setText(text)

    def _update_buttons(self) -> None:
        entry = self.selected()
        removable = entry is not None and (entry.source in ("added", "downloaded") or (
            entry.source.startswith(SCANNED) and entry.source[len(SCANNED):] in self._folders))
        self.remove_button.setEnabled(removable)
        self.use_button.setEnabled(entry is not None and entry.kind in model_library.MODEL_KINDS)

    # ---- actions ---------------------------------------------------------------------------------

    def add_path(self, path: str) -> None:
        """Add a file, a diffusers folder, or another tool's model folder."""
        if not path:
            return
        from pathlib import Path

        target = Path(path)
        try:
            if target.is_dir() and not (target / "model_index.json").is_file():
                scan = model_library.add_folder(target)
                note = f" ({len(scan.skipped)} file(s) skipped: {printable(scan.skipped[0][1], 300)})" \
                    if scan.skipped else ""
                self.show_info(f"Added the {scan.layout} folder {printable(target.name)}: {len(scan.entries)} "
                               f"model file(s){note}")
            else:
                prediction_type = self._sd2_prediction_type(target)
                if prediction_type == "":
                    return  # the user cancelled
                entry = model_library.add(target, prediction_type=prediction_type)
                self.show_info(f"Added {printable(entry.name)}: {entry.details}")
        except ModelError as exc:
            self.show_error(str(exc))
            return
        except OSError as exc:
            self.show_error(f"Cannot read {printable(target)}: {exc.strerror or exc}")
            return
        message = self.message.text()
        self.refresh()
        self.show_info(message)  # what was added, rather than the refresh's note
        self.changed.emit()

    def _sd2_prediction_type(self, target) -> str | None:
        """For an SD 2.x file that does not say what it predicts (no v_pred key, no .yaml beside it), the
        user's answer; "" when they cancel; None for every other file."""
        from desktop_app.models import model_files
        from desktop_app.models.single_file import sidecar_prediction_type

        if not target.is_file() or model_files.inspect(target).family != "sd2":
            return None
        if sidecar_prediction_type(target) is not None:
            return None
        return self.prediction_dialog(self, target.name) or ""

    def open_download(self) -> None:
        from desktop_app.gui.download_dialog import DownloadDialog

        dialog = DownloadDialog(self)
        dialog.downloaded.connect(self._on_downloaded)
        dialog.exec()

    def _on_downloaded(self, name: str) -> None:
        self.refresh()
        self.select(name)
        self.show_info(f"Downloaded {name} into the library.")
        self.changed.emit()

    def remove_selected(self) -> None:
        entry = self.selected()
        if entry is None:
            return
        scanned = entry.source.startswith(SCANNED)
        try:  # an entry found in a registered folder goes with its folder
            model_library.remove(entry.source[len(SCANNED):] if scanned else entry.name)
        except ModelError as exc:
            self.show_error(str(exc))
            return
        if scanned:
            self.show_info(f"Removed the folder {entry.source[len(SCANNED):]} from the library; its files stay")
        else:
            self.show_info(f"Removed {entry.name} from the library; the file stays in {entry.path}")
        self.refresh()
        self.changed.emit()

    def use_selected(self) -> None:
        entry = self.selected()
        if entry is None:
            return
        if entry.kind not in model_library.MODEL_KINDS:
            self.show_error(f"{entry.name} is a {entry.kind}, not a model to generate with; choose a checkpoint "
                            "or a diffusers model.")
            return
        self.show_info(f"Generating with {entry.name} ({entry.family_name}).")
        self.use_requested.emit("default" if entry.source == "embedded" else entry.path)

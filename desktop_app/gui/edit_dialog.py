"""Image → Edit with an Instruction…: a short dialog that asks what to change ("make it night") and which edit
model changes it (the library's models that can edit, models/edit_models.py, or a folder or file browsed to).

The dialog only asks: ``submitted(instruction, model)`` goes to whoever starts the edit (gui/edit_wiring.py),
which answers with ``accept()`` or ``refuse(line)`` (the one line stays in the dialog, which stays open).
Torch-free: which models can edit is told from their folders' and files' headers.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QLabel, QLineEdit,
                               QPushButton, QVBoxLayout, QWidget)

from desktop_app.errors import ModelError
from desktop_app.resources import DEFAULT_MODEL

BROWSE = "\x00browse"  # the combo's data for "Browse…"


def edit_model_choices(current: str | None = None) -> list[tuple[str, str]]:
    """(label, path) of the models that can edit: ``current`` (the form's model, a path) first when it can, then
    the model library's (its entries of a family that edits, each checked as the engine will check it)."""
    from desktop_app.models import families, model_library
    from desktop_app.models.edit_models import check_edit_model, edit_families

    found: list[tuple[str, str]] = []
    seen: set[str] = set()

    def offer(name: str, path: str) -> None:
        try:
            model = check_edit_model(Path(path), name)
        except (ModelError, OSError, ValueError):
            return
        key = str(Path(path).resolve())
        if key not in seen:
            seen.add(key)
            what = families.EDIT_MODELS.get(model.pipeline) or families.FAMILIES[model.family].name
            found.append((f"{name} ({what})", str(path)))

    if current and current != DEFAULT_MODEL and Path(current).expanduser().exists():
        offer(Path(current).name, str(Path(current).expanduser()))
    try:
        library = model_library.entries("model")
    except (ModelError, OSError):
        library = []
    editing = set(edit_families())
    for entry in library:
        if entry.family in editing:
            offer(entry.name, entry.path)
    return found


def browse_model(parent: QWidget) -> str:
    """An edit model's diffusers folder (a transformer file: name it in the folder dialog's path field)."""
    return QFileDialog.getExistingDirectory(parent, "Choose an edit model's folder", "")


class EditDialog(QDialog):
    submitted = Signal(str, str)  # instruction, model (a path)

    browse = staticmethod(browse_model)  # replaceable in tests

    def __init__(self, parent: QWidget | None, source: str, choices: list[tuple[str, str]]):
        """``source``: what is edited, for the person ("the image on the canvas (512×512)"); ``choices``:
        (label, path) of the edit models (``edit_model_choices``)."""
        super().__init__(parent)
        self.setWindowTitle("Edit with an Instruction")
        self.setMinimumWidth(460)
        self.source_label = QLabel(f"Changes {source} with an edit model; the result is a new image.")
        self.source_label.setWordWrap(True)
        self.instruction_edit = QLineEdit()
        self.instruction_edit.setObjectName("edit_instruction")
        self.instruction_edit.setPlaceholderText('what to change, e.g. "make it night"')
        self.model_combo = QComboBox()
        self.model_combo.setObjectName("edit_model")
        for label, path in choices:
            self.model_combo.addItem(label, path)
        self.model_combo.addItem("Browse…", BROWSE)
        self.model_combo.activated.connect(self._on_model_chosen)
        self.none_label = QLabel("No model in the library can edit: add FLUX.1 Kontext, Qwen-Image-Edit or "
                                 "FLUX.2 [klein] (Models), or browse to one.")
        self.none_label.setWordWrap(True)
        self.none_label.setVisible(not choices)
        self.note = QLabel()
        self.note.setObjectName("edit_note")
        self.note.setWordWrap(True)
        self.note.setStyleSheet("color: #d9534f;")
        self.note.hide()
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Cancel)
        self.edit_button: QPushButton = buttons.addButton("Edit", QDialogButtonBox.ButtonRole.AcceptRole)
        self.edit_button.setDefault(True)
        buttons.accepted.connect(self._submit)
        buttons.rejected.connect(self.reject)
        form = QFormLayout()
        form.addRow("Instruction", self.instruction_edit)
        form.addRow("Edit model", self.model_combo)
        layout = QVBoxLayout(self)
        layout.addWidget(self.source_label)
        layout.addLayout(form)
        layout.addWidget(self.none_label)
        layout.addWidget(self.note)
        layout.addWidget(buttons)

    def model(self) -> str:
        data = self.model_combo.currentData()
        return "" if data == BROWSE else str(data or "")

    def select_model(self, path: str) -> None:
        """Choose ``path`` (added to the list when it is not there)."""
        index = self.model_combo.findData(str(path))
        if index < 0:
            index = self.model_combo.count() - 1  # before "Browse…"
            self.model_combo.insertItem(index, Path(path).name, str(path))
        self.model_combo.setCurrentIndex(index)

    def refuse(self, line: str) -> None:
        """Bad input: the one line under the fields; the dialog stays open to change them."""
        self.note.setText(line)
        self.note.show()

    def _on_model_chosen(self, index: int) -> None:
        if self.model_combo.itemData(index) != BROWSE:
            return
        path = self.browse(self)
        if path:
            self.select_model(path)
        elif self.model_combo.count() > 1:
            self.model_combo.setCurrentIndex(0)

    def _submit(self) -> None:
        self.note.hide()
        self.submitted.emit(self.instruction_edit.text(), self.model())

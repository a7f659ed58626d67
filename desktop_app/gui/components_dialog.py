"""Models > Components…: the diffusers folder whose text encoders, tokenizers and VAE a family's single
transformer files (Flux, SD3 ... .safetensors or .gguf) run with, one per family: the window's face of
``desktop-app models components FAMILY FOLDER`` (models/components.py, torch-free).

A folder is checked when it is chosen (a complete diffusers folder of the family) and refused in one line in the
dialog, never with a traceback. The engine checks the family's folder again before every load and loads the model
again when it has changed (engine/generate.py ``Engine.load``), so a change applies from the next run.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.errors import ModelError, printable
from desktop_app.models import components, families

NONE_NAMED = "None named: its transformer files cannot run yet"


def choose_folder(parent: QWidget, family_name: str) -> str:
    return QFileDialog.getExistingDirectory(parent, f"Choose a {family_name} diffusers model folder")


class ComponentsDialog(QDialog):
    """Family chooser, the folder named for it, Choose… and Clear. ``changed(family)`` after each change."""

    changed = Signal(str)  # the family key whose components folder was named or forgotten

    folder_dialog = staticmethod(choose_folder)  # replaceable in tests: no native dialogs there

    def __init__(self, parent: QWidget | None = None, family: str | None = None):
        super().__init__(parent)
        self.setWindowTitle("Components of transformer files")
        self.setObjectName("components_dialog")
        intro = QLabel("A single transformer file (Flux, SD3 … as .safetensors or .gguf) holds the transformer "
                       "alone. It runs with the text encoders, tokenizers and VAE of a diffusers folder of its "
                       "family: name that folder once per family here.")
        intro.setWordWrap(True)
        self.family_combo = QComboBox()
        self.family_combo.setObjectName("components_family")
        for key, declared in families.FAMILIES.items():  # the table's order: SD3, Flux.1, Chroma, ...
            if key in families.SINGLE_FILES:
                self.family_combo.addItem(declared.name, key)
        if family is not None and self.family_combo.findData(family) >= 0:
            self.family_combo.setCurrentIndex(self.family_combo.findData(family))
        self.family_combo.currentIndexChanged.connect(lambda _index: self._show_folder())
        self.folder_label = QLabel()
        self.folder_label.setObjectName("components_folder")
        self.folder_label.setWordWrap(True)
        self.folder_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.choose_button = QPushButton("Choose…")
        self.choose_button.setObjectName("components_choose")
        self.choose_button.setToolTip("Name a diffusers folder of this family (with model_index.json, its text "
                                      "encoders, tokenizers and VAE)")
        self.choose_button.clicked.connect(self.choose)
        self.clear_button = QPushButton("Clear")
        self.clear_button.setObjectName("components_clear")
        self.clear_button.setToolTip("Forget the folder named for this family (the folder itself stays)")
        self.clear_button.clicked.connect(self.clear)
        self.message = QLabel()
        self.message.setObjectName("components_message")
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)

        row = QHBoxLayout()
        row.addWidget(self.choose_button)
        row.addWidget(self.clear_button)
        row.addStretch(1)
        form = QFormLayout()
        form.addRow("Family", self.family_combo)
        form.addRow("Folder", self.folder_label)
        form.addRow("", row)
        layout = QVBoxLayout(self)
        layout.addWidget(intro)
        layout.addLayout(form)
        layout.addWidget(self.message)
        layout.addStretch(1)
        layout.addWidget(buttons)
        self.resize(560, 260)
        self._show_folder()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self._show_folder()  # opened again: as the library is now (the command line may have changed it)
        super().showEvent(event)

    def family(self) -> str:
        return str(self.family_combo.currentData())

    def folder(self) -> str | None:
        """The folder named for the chosen family in the library, or None."""
        return components.stored().get(self.family())

    def choose(self) -> None:
        """Ask for a folder and name it for the family; a folder that will not do is refused in one line."""
        name = families.FAMILIES[self.family()].name
        folder = self.folder_dialog(self, name)
        if folder:
            self.name_folder(folder)

    def name_folder(self, folder: str) -> None:
        family = self.family()
        try:
            found = components.set_for_family(family, folder)
        except ModelError as exc:
            self._tell(str(exc), error=True)
            return
        except OSError as exc:
            self._tell(f"Cannot read {printable(folder, 300)}: {exc.strerror or exc}", error=True)
            return
        self._show_folder()
        name = families.FAMILIES[family].name
        self._tell(f"{name} transformer files run with the components of {printable(found, 300)} from the next "
                   "run.")
        self.changed.emit(family)

    def clear(self) -> None:
        family = self.family()
        name = families.FAMILIES[family].name
        try:
            cleared = components.clear(family)
        except ModelError as exc:
            self._tell(str(exc), error=True)
            return
        self._show_folder()
        if cleared:
            self._tell(f"Forgot the components folder of {name}; the folder itself stays.")
            self.changed.emit(family)
        else:
            self._tell(f"No components folder was named for {name}.")

    def _show_folder(self) -> None:
        """The folder named for the chosen family, and what is wrong with it now (moved, emptied) if anything."""
        folder = self.folder()
        self.folder_label.setText(printable(folder, 400) if folder else NONE_NAMED)
        self.folder_label.setToolTip(printable(folder, 400) if folder else "")
        self.clear_button.setEnabled(folder is not None)
        try:
            if folder:
                components.check(self.family(), folder)
        except (ModelError, OSError) as exc:
            self._tell(f"This folder will not do now: {exc}", error=True)
        else:
            self._tell("")

    def _tell(self, text: str, error: bool = False) -> None:
        self.message.setProperty("error", error)
        self.message.setStyleSheet("color: #d9534f;" if error else "")
        self.message.setText(" ".join(text.split()))

"""The SDXL refiner row of the generation form: which refiner finishes the image (none by default) and at what
share of the steps the base model hands over. Offered only when the form's model is an SDXL base. No torch here:
families come from file headers (``model_files``)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QFileDialog, QHBoxLayout, QLabel, QToolTip, QWidget

from desktop_app.models import model_files
from desktop_app.errors import ModelError

from desktop_app.gui.path_combo import path_index

NONE_TEXT = "None"
BROWSE = "\x00browse"
REFINER_FAMILY = "sdxl-refiner"
BASE_FAMILY = "sdxl"
DEFAULT_SWITCH = 0.8


def model_family(model: str) -> str | None:
    """The family of a model file or diffusers folder from its header ("sdxl", "sdxl-refiner", ...), None when
    it cannot be read (the embedded model's "default" included: it is no SDXL)."""
    if not model or model == "default":
        return None
    try:
        return model_files.inspect(Path(model).expanduser()).family
    except (ModelError, OSError):
        return None


def library_refiners() -> list[tuple[str, str]]:
    """(name, path) of the SDXL refiners in the model library."""
    from desktop_app.models import model_library

    try:
        return [(e.name, e.path) for e in model_library.entries("model", hf_cache=False)
                if e.family == REFINER_FAMILY]
    except ModelError:
        return []


def choose_refiner_file(parent: QWidget) -> str:
    path, _ = QFileDialog.getOpenFileName(parent, "Choose an SDXL refiner", "",
                                          "Models (*.safetensors);;All files (*)")
    return path


class RefinerChoice(QWidget):
    """A combo (None, the library's refiners, Browse…) and the switch point."""

    file_dialog = staticmethod(choose_refiner_file)  # replaceable in tests

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.combo = QComboBox()
        self.combo.setObjectName("refiner")
        self.combo.setToolTip("SDXL only: a refiner model finishes the last steps of the base model's image "
                              "(the two-stage SDXL setup). None: the base model draws alone")
        self.combo.activated.connect(self._on_activated)
        # long file names must not widen the form beyond its dock
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(6)
        self.switch_spin = QDoubleSpinBox()
        self.switch_spin.setObjectName("refiner_switch")
        self.switch_spin.setRange(0.05, 0.95)
        self.switch_spin.setSingleStep(0.05)
        self.switch_spin.setDecimals(2)
        self.switch_spin.setValue(DEFAULT_SWITCH)
        self.switch_spin.setToolTip("The share of the steps the base model runs before the refiner takes over")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo, 1)
        layout.addWidget(QLabel("at"))
        layout.addWidget(self.switch_spin)
        self._last_index = 0
        self.problem = ""  # the last refused file, as shown in a tooltip
        self.refresh()
        self.set_available(False)

    # ---- what is offered -------------------------------------------------------------------------

    def refresh(self) -> None:
        """Re-read the library's refiners, keeping the current choice."""
        current = self.refiner()
        self.combo.clear()
        self.combo.addItem(NONE_TEXT, None)
        for name, path in library_refiners():
            self.combo.addItem(name, path)
            self.combo.setItemData(self.combo.count() - 1, path, Qt.ItemDataRole.ToolTipRole)
        self.combo.insertSeparator(self.combo.count())
        self.combo.addItem("Browse file…", BROWSE)
        if current:
            self.set_refiner(current)
        else:
            self.combo.setCurrentIndex(0)
            self._last_index = 0

    def set_available(self, available: bool) -> None:
        """Offer the row for SDXL base models only; elsewhere it reads None and is greyed out."""
        self.combo.setEnabled(available)
        self.switch_spin.setEnabled(available and self.refiner() is not None)
        if not available:
            self.combo.setCurrentIndex(0)
            self._last_index = 0

    def set_model(self, model: str) -> None:
        self.set_available(model_family(model) == BASE_FAMILY)

    # ---- the choice ------------------------------------------------------------------------------

    def refiner(self) -> str | None:
        value = self.combo.currentData()
        return None if value in (None, BROWSE) or not self.combo.isEnabled() else str(value)

    def switch(self) -> float:
        return round(self.switch_spin.value(), 2)

    def set_refiner(self, path: str) -> bool:
        """Select the refiner at ``path`` (added to the list if new). False when it is no SDXL refiner."""
        path = str(Path(path).expanduser())
        if model_family(path) != REFINER_FAMILY:
            return False
        index = path_index(self.combo, path, Path(path).stem)
        self.combo.setCurrentIndex(index)
        self._last_index = index
        self.switch_spin.setEnabled(self.combo.isEnabled())
        return True

    def apply(self, values: dict) -> list[str]:
        """Take "refiner" and "refiner_switch" from a recipe; returns the fields that could not be used."""
        skipped = []
        if "refiner" in values:
            refiner = values["refiner"]
            if not refiner:
                self.combo.setCurrentIndex(0)
                self._last_index = 0
            elif not (self.combo.isEnabled() and self.set_refiner(str(refiner))):
                skipped.append("refiner")
        switch = values.get("refiner_switch")
        if isinstance(switch, (int, float)) and 0 < switch < 1:
            self.switch_spin.setValue(float(switch))
        self.switch_spin.setEnabled(self.refiner() is not None)
        return skipped

    def _on_activated(self, index: int) -> None:
        if self.combo.itemData(index) == BROWSE:
            path = self.file_dialog(self)
            if path and not self.set_refiner(path):
                family = model_files.FAMILY_NAMES.get(model_family(path) or "", "not a model this app can read")
                self.problem = f"{Path(path).name} is not an SDXL refiner ({family})."
                QToolTip.showText(self.combo.mapToGlobal(self.combo.rect().bottomLeft()), self.problem, self.combo)
            if not path or self.refiner() != str(Path(path).expanduser()):
                self.combo.setCurrentIndex(self._last_index)
            return
        self._last_index = index
        self.switch_spin.setEnabled(self.refiner() is not None)

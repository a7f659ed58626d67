"""The LoRA picker in the generation form: the LoRAs in the user's LoRA folder and the model library, each
with a checkbox, a weight and the trigger word its metadata names. No torch here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QGridLayout,
    QLabel,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from desktop_app.engine.request import LoraChoice

DIFFUSERS_FILE = "pytorch_lora_weights.safetensors"


@dataclass(frozen=True)
class LoraItem:
    name: str  # what the request names (the engine resolves it)
    path: Path
    family: str = ""  # "SD 1.x", "SDXL", ... when the library knows it
    trigger: str = ""


def find_loras() -> list[LoraItem]:
    """The LoRAs the user has: ``paths.loras_dir()`` (kohya files, and diffusers-format folders as the LoRA
    trainer writes them) and the model library's LoRAs. Sorted by name, each name once."""
    from desktop_app import paths
    from desktop_app.engine.lora import read_metadata, trigger_words

    found: dict[str, tuple[Path, str]] = {}
    folder = paths.loras_dir()
    for file in sorted(folder.glob("*.safetensors")):
        found.setdefault(file.stem, (file, ""))
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and (p / DIFFUSERS_FILE).is_file()):
        found.setdefault(sub.name, (sub / DIFFUSERS_FILE, ""))
    try:
        from desktop_app.models import model_library

        for entry in model_library.entries("lora", hf_cache=False):
            found.setdefault(entry.name, (Path(entry.path), entry.family_name))
    except Exception:  # noqa: BLE001 - a broken library file must not hide the LoRA folder
        pass
    return [LoraItem(name, path, family or _family(path), trigger_words(read_metadata(path)))
            for name, (path, family) in sorted(found.items(), key=lambda item: item[0].lower())]


def _family(path: Path) -> str:
    """The family the LoRA fits, from its tensor names and shapes (model_files reads only the header)."""
    try:
        from desktop_app.models import model_files

        info = model_files.inspect(path)
    except Exception:  # noqa: BLE001 - unreadable or unsafe: the engine says why when it is chosen
        return "unreadable"
    return info.family_name if info.family != "unknown" else ""


def no_loras_line(family_name: str) -> str:
    """Why the picker is off for a family that takes no LoRAs in this version (models/families.py ``loras``)."""
    from desktop_app.models.families import FAMILIES

    takers = [f.name for f in FAMILIES.values() if f.loras and f.denoiser_folder == "transformer"]
    listed = ", ".join(takers[:-1]) + f" and {takers[-1]}" if len(takers) > 1 else "".join(takers)
    return (f"{family_name} models take no LoRAs in this version: LoRAs apply to Stable Diffusion models "
            f"(1.x, 2.x, SDXL) and to {listed}.")


class LoraPicker(QWidget):
    """One row per LoRA: [x] name (family) · weight · trigger word. ``choices()`` gives the request's loras."""

    changed = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setObjectName("lora_picker")
        self._rows: dict[str, tuple[QCheckBox, QDoubleSpinBox, LoraItem]] = {}
        self.taken = True  # whether the model's family takes LoRAs (set_family): ticks are not sent when not
        self._grid_host = QWidget()
        self._grid = QGridLayout(self._grid_host)
        self._grid.setContentsMargins(0, 0, 0, 0)
        self.empty_label = QLabel("No LoRAs yet: put .safetensors LoRAs in the LoRA folder, or add them to the "
                                  "model library.")
        self.empty_label.setWordWrap(True)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setObjectName("lora_refresh")
        self.refresh_button.clicked.connect(self.refresh)
        self.family_note = QLabel()  # why the picker is off: the model's family takes no LoRAs
        self.family_note.setObjectName("lora_family_note")
        self.family_note.setWordWrap(True)
        self.family_note.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.family_note)
        layout.addWidget(self._grid_host)
        layout.addWidget(self.empty_label)
        layout.addWidget(self.refresh_button)
        self.refresh()

    def refresh(self) -> None:
        """Scan again, keeping the ticks and weights of LoRAs that are still there."""
        kept = {name: (box.isChecked(), spin.value()) for name, (box, spin, _) in self._rows.items()}
        while self._grid.count():
            widget = self._grid.takeAt(0).widget()
            if widget is not None:
                widget.deleteLater()
        self._rows.clear()
        for row, item in enumerate(find_loras()):
            box = QCheckBox(f"{item.name} ({item.family})" if item.family else item.name)
            box.setObjectName(f"lora_check_{item.name}")
            box.setToolTip(str(item.path))
            spin = QDoubleSpinBox()
            spin.setObjectName(f"lora_weight_{item.name}")
            spin.setRange(-4.0, 4.0)
            spin.setSingleStep(0.05)
            spin.setDecimals(2)
            spin.setValue(1.0)
            spin.setToolTip("LoRA weight: 1 as trained, 0 off, more or less to strengthen or soften it")
            checked, weight = kept.get(item.name, (False, 1.0))
            box.setChecked(checked)
            spin.setValue(weight)
            trigger = QLabel(f"trigger: {item.trigger}" if item.trigger else "")
            trigger.setObjectName(f"lora_trigger_{item.name}")
            trigger.setToolTip("Put this word in the prompt: the LoRA was trained with it")
            box.toggled.connect(self.changed)
            spin.valueChanged.connect(self.changed)
            self._grid.addWidget(box, row, 0)
            self._grid.addWidget(spin, row, 1)
            self._grid.addWidget(trigger, row, 2)
            self._rows[item.name] = (box, spin, item)
        self.empty_label.setVisible(not self._rows)

    def set_family(self, family: str) -> None:
        """Follow the model's family (a models/families.py key): off, saying why, for one that takes no LoRAs
        (its ticks are kept for the next model, but not sent); on for the others and for an unknown one."""
        from desktop_app.models.families import FAMILIES

        declared = FAMILIES.get(family)
        taken = self.taken = declared is None or declared.loras
        why = "" if taken else no_loras_line(declared.name)
        self.setEnabled(taken)
        self.setToolTip(why)
        self.family_note.setText(why)
        self.family_note.setVisible(bool(why))

    def names(self) -> list[str]:
        return list(self._rows)

    def names_checked(self) -> list[str]:
        """The ticked LoRAs the request sends (none while the model's family takes none)."""
        if not self.taken:
            return []
        return [name for name, (box, _, _) in self._rows.items() if box.isChecked()]

    def choices(self) -> tuple[LoraChoice, ...]:
        if not self.taken:
            return ()
        return tuple(LoraChoice(name, round(spin.value(), 2))
                     for name, (box, spin, _) in self._rows.items() if box.isChecked())

    def set_choices(self, loras) -> list[str]:
        """Tick the LoRAs of a recipe (LoraChoice, dicts or pairs) and set their weights; untick the rest.
        Returns the names this machine does not have."""
        wanted = {}
        for lora in loras or ():
            if isinstance(lora, dict):
                wanted[str(lora.get("name"))] = float(lora.get("weight", 1.0))
            elif isinstance(lora, (list, tuple)):
                wanted[str(lora[0])] = float(lora[1]) if len(lora) > 1 else 1.0
            else:
                wanted[str(lora.name)] = float(lora.weight)
        for name, (box, spin, _) in self._rows.items():
            box.setChecked(name in wanted)
            if name in wanted:
                spin.setValue(wanted[name])
        return [name for name in wanted if name not in self._rows]

"""The form's "Weights" choice (issue 16): how the engine stores the denoiser's weights, handed to the worker's
Engine (``Engine.set_weights``) with each job. The modes are engine/memory_plan.py's WEIGHTS, named here
without importing the engine (torch)."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox

WEIGHTS = ("auto", "full", "fp8")
DEFAULT_WEIGHTS = "auto"
WEIGHTS_TIP = ("How the model's weights are stored. auto: fp8 on a GPU only when the model would not fit "
               "otherwise; fp8: always (half the memory of bf16, a little slower, slightly different images); "
               "full: never (the model's own precision)")


def weights_combo() -> QComboBox:
    combo = QComboBox()
    combo.setObjectName("weights")
    combo.addItems(list(WEIGHTS))
    combo.setCurrentText(DEFAULT_WEIGHTS)
    combo.setToolTip(WEIGHTS_TIP)
    return combo


def set_weights(combo: QComboBox, mode) -> bool:
    """Select ``mode``; False (the choice kept) for anything that is not one of WEIGHTS."""
    if mode not in WEIGHTS:
        return False
    combo.setCurrentText(mode)
    return True


def wire_weights(form, controller) -> None:
    """The form's Weights to the run controller, which sends it with each job (now, and at every change)."""
    controller.set_weights(form.weights_combo.currentText())
    form.weights_changed.connect(controller.set_weights)

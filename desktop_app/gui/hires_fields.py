"""The form's hires fix fields: how much larger (Off, or 1.25x to 4x) and how much the short img2img pass may
change. Built here so the form stays one screen of code."""

from __future__ import annotations

from PySide6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel


def hires_fields() -> tuple[QDoubleSpinBox, QDoubleSpinBox, QHBoxLayout]:
    """(scale spin box, strength spin box, the row holding both)."""
    scale = QDoubleSpinBox()
    scale.setObjectName("hires_scale")
    scale.setRange(1.0, 4.0)
    scale.setSingleStep(0.25)
    scale.setDecimals(2)
    scale.setSpecialValueText("Off")
    scale.setSuffix("x")
    scale.setToolTip("Hires fix (Stable Diffusion models): enlarge this much (with the upscaler chosen above, "
                     "else Lanczos), then re-draw detail with a short img2img pass")
    strength = QDoubleSpinBox()
    strength.setObjectName("hires_strength")
    strength.setRange(0.0, 1.0)
    strength.setSingleStep(0.05)
    strength.setValue(0.5)
    strength.setToolTip("Denoising strength of the hires pass: how much it may change")
    row = QHBoxLayout()
    row.addWidget(scale, 1)
    row.addWidget(QLabel("strength"))
    row.addWidget(strength, 1)
    return scale, strength, row

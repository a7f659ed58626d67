"""The form's start image (issue 17): image to image and inpainting. A thumbnail of the start image with the
mask over it, how strongly the model may change it (Strength), how a picture of another shape becomes the
form's size (Fit: crop or stretch), the inpainting mask (Paint mask on the canvas, its Feather), and
outpainting (Extend: pixels added on each side; the form's size grows by them, the strength goes to 1 and the mask
is not painted while extending: outpainting repaints the new area only, its seam feathered by Feather).

A start image is set by Open…, by dropping an image file on the box, by "From canvas" (the image on the canvas),
or from a recipe. A family that diffusers cannot run image to image (or inpainting) for disables the box (or the
mask) with a tooltip naming it; what is set is then kept but not sent, as the negative prompt is.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QImage, QPainter, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from desktop_app.engine.request import (
    DEFAULT_MASK_BLUR,
    DEFAULT_STRENGTH,
    INIT_FITS,
    MAX_MASK_BLUR,
    MAX_OUTPAINT,
    OUTPAINT_STRENGTH,
)
from desktop_app.errors import RequestError, printable
from desktop_app.gui.drops import FileDrops
from desktop_app.gui.mask_overlay import draw_mask
from desktop_app.gui.mask_painter import MaskLayer, work_dir
from desktop_app.gui.outpaint_row import OutpaintRow

THUMB = 96
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff);;All files (*)"
FIT_LABELS = {"crop": "Crop to fill", "stretch": "Stretch"}
# request field -> (form label, widget attribute of the form) for pointing at a bad value
START_FIELD_WIDGETS = {
    "init_image": ("Start image", "start_box"),
    "strength": ("Strength", "strength_spin"),
    "mask": ("Mask", "start_box"),
    "mask_blur": ("Feather", "mask_blur_spin"),
    "init_fit": ("Fit", "fit_combo"),
    "outpaint": ("Extend", "start_box"),
}
PAINT_TIP = "Paint on the canvas the part of the start image to repaint (inpainting)"
NO_PAINT_WHILE_EXTENDING = ("No mask while extending: outpainting repaints the new area only (set Extend to None "
                            "to paint a mask)")


def image_jobs(family: str, name: str = "") -> tuple[bool, bool, str]:
    """(image to image, inpainting, why not) for a family key (models/families.py). The embedded model runs
    both with Stable Diffusion's pipelines (engine/image_job.py) though its family names none; a model whose
    family is not known here is let through (the engine refuses it in one line if it must)."""
    from desktop_app.models import families

    declared = families.FAMILIES.get(family)
    if family == "embedded" or declared is None:
        return True, True, ""
    shown = name or declared.name
    if not (declared.image_to_image or declared.inpaint):
        return False, False, (f"Image to image is not available for {shown} models: diffusers has no "
                              "image-to-image or inpaint pipeline for them")
    if not declared.inpaint:
        return True, False, f"Inpainting is not available for {shown} models: diffusers has no inpaint pipeline"
    return True, True, ""


class StartImageBox(QGroupBox):
    changed = Signal()  # the start image was set or cleared
    paint_toggled = Signal(bool)  # Paint mask pressed or released
    canvas_requested = Signal()  # "From canvas": the window hands the image on the canvas to ``set_image``
    notice = Signal(str)  # a line for the status bar

    def __init__(self, parent: QWidget | None = None):
        super().__init__("Start image", parent)
        self.setObjectName("start_box")
        self._path: Path | None = None
        self._image: QImage | None = None
        self._target = (64, 64)
        self._inpaint_ok = True
        self._size_spins = None  # the form's width and height spins (follow_size), grown by what Extend adds
        self._borders = (0, 0, 0, 0)  # Extend's borders as last applied to the form's size
        self._strength_before: float | None = None  # the strength before Extend set it to 1
        self._why_not = ""  # why the family cannot inpaint (nor outpaint), or ""
        self.layer = MaskLayer(self)

        # 1. the picture and where it comes from
        self.thumb = QLabel("Drop an image here")
        self.thumb.setObjectName("start_thumb")
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setWordWrap(True)
        self.thumb.setStyleSheet("QLabel#start_thumb { border: 1px dashed palette(mid); border-radius: 4px;"
                                 " color: palette(placeholder-text); font-size: 11px; }")
        self.info_label = QLabel("None: the prompt starts from noise. Open or drop an image to start from it.")
        self.info_label.setObjectName("start_info")
        self.info_label.setWordWrap(True)
        self.info_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)  # never widens
        self.open_button = QPushButton("Open…")
        self.open_button.setToolTip("Start from an image file (or drop one on this box)")
        self.open_button.clicked.connect(lambda _=False: self.choose_file())
        self.canvas_button = QPushButton("From canvas")
        self.canvas_button.setToolTip("Start from the image on the canvas")
        self.canvas_button.clicked.connect(lambda _=False: self.canvas_requested.emit())
        self.clear_button = QPushButton("Clear")
        self.clear_button.setObjectName("start_clear")
        self.clear_button.setToolTip("Back to text to image")
        self.clear_button.clicked.connect(lambda _=False: self.clear())
        buttons = QHBoxLayout()
        for button in (self.open_button, self.canvas_button, self.clear_button):
            buttons.addWidget(button)
        top = QHBoxLayout()
        top.addWidget(self.thumb, 0, Qt.AlignmentFlag.AlignTop)
        top.addWidget(self.info_label, 1)

        # 2. how the start image is used
        self.strength_slider = QSlider(Qt.Orientation.Horizontal)
        self.strength_slider.setObjectName("strength_slider")
        self.strength_slider.setRange(1, 100)
        self.strength_spin = QDoubleSpinBox()
        self.strength_spin.setObjectName("strength")
        self.strength_spin.setRange(0.01, 1.0)
        self.strength_spin.setSingleStep(0.05)
        self.strength_spin.setDecimals(2)
        tip = ("How much the model may change the start image: low keeps it, 1 redraws it (the share of the "
               "steps run)")
        self.strength_spin.setToolTip(tip)
        self.strength_slider.setToolTip(tip)
        self.strength_slider.valueChanged.connect(lambda value: self.strength_spin.setValue(value / 100))
        self.strength_spin.valueChanged.connect(lambda value: self.strength_slider.setValue(round(value * 100)))
        self.strength_spin.setValue(DEFAULT_STRENGTH)
        strength_row = QHBoxLayout()
        strength_row.addWidget(self.strength_slider, 1)
        strength_row.addWidget(self.strength_spin)
        self.fit_combo = QComboBox()
        self.fit_combo.setObjectName("init_fit")
        for fit in INIT_FITS:
            self.fit_combo.addItem(FIT_LABELS.get(fit, fit), fit)
        self.fit_combo.setToolTip("A start image of another shape: cropped to fill the size, or stretched to it")
        self.fit_combo.currentIndexChanged.connect(lambda _index: self._show_info())

        # 3. the mask
        self.paint_button = QPushButton("Paint mask")
        self.paint_button.setObjectName("paint_mask")
        self.paint_button.setCheckable(True)
        self.paint_button.setToolTip("Paint on the canvas the part of the start image to repaint (inpainting)")
        self.paint_button.toggled.connect(self.paint_toggled)
        self.mask_label = QLabel("No mask: the whole image is redrawn")
        self.mask_label.setObjectName("mask_state")
        self.mask_label.setWordWrap(True)
        self.mask_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.mask_blur_spin = QSpinBox()
        self.mask_blur_spin.setObjectName("mask_blur")
        self.mask_blur_spin.setRange(0, MAX_MASK_BLUR)
        self.mask_blur_spin.setValue(DEFAULT_MASK_BLUR)
        self.mask_blur_spin.setSuffix(" px")
        self.mask_blur_spin.setToolTip("Feather: the repainted area fades into the kept one over this many pixels "
                                       "outward; beyond them the start image is kept exactly")
        mask_row = QHBoxLayout()
        mask_row.addWidget(self.paint_button)
        mask_row.addWidget(QLabel("Feather"))
        mask_row.addWidget(self.mask_blur_spin)
        mask_row.addStretch(1)
        # 4. outpainting
        self.extend = OutpaintRow()
        self.extend.setObjectName("outpaint")
        self.extend.changed.connect(self._on_extend)
        self.settings = QWidget()
        settings = QFormLayout(self.settings)
        settings.setContentsMargins(0, 0, 0, 0)
        settings.addRow("Strength", strength_row)
        settings.addRow("Fit", self.fit_combo)
        settings.addRow("Mask", mask_row)
        settings.addRow("", self.mask_label)
        settings.addRow("Extend", self.extend)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(buttons)
        layout.addWidget(self.settings)
        FileDrops(self).dropped.connect(self.set_image)
        self.layer.changed.connect(self._on_mask_changed)
        self._show_info()

    # ---- the start image -----------------------------------------------------------------------------

    def path(self) -> Path | None:
        return self._path

    def image(self) -> QImage | None:
        return self._image

    def choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a start image", "", IMAGE_FILTER)
        if path:
            self.set_image(path)

    def set_image(self, path) -> bool:
        """Start from the image file at ``path``; a file that is not an image is told in one line (``notice``)
        and changes nothing. A mask painted on a start image of the same size is kept (repainting a result
        again), any other is cleared."""
        path = Path(path)
        image = QImage(str(path))
        if image.isNull():
            self.notice.emit(f"Start image not set: {printable(str(path), 200)} cannot be read as an image")
            return False
        self._path, self._image = path, image
        if self.layer.size() != image.size():
            self.layer.reset(image.size())
            self.layer.brush = max(1, round(min(image.width(), image.height()) / 10))
        self._show_info()
        self.changed.emit()
        self.notice.emit(f"Start image: {path.name} ({image.width()}×{image.height()})")
        return True

    def clear(self) -> None:
        """Back to text to image: the start image and its mask go."""
        if self._path is None:
            return
        self.paint_button.setChecked(False)
        self._path = self._image = None
        self.layer.reset(None)
        if self._strength_before is not None and self.strength_spin.value() == OUTPAINT_STRENGTH:
            self.strength_spin.setValue(self._strength_before)
        self._set_borders((0, 0, 0, 0))
        self._show_info()
        self.changed.emit()

    def load_mask(self, path) -> bool:
        """An image file as the mask (white = repaint), scaled to the start image; a problem is one line."""
        problem = self.layer.load(Path(path))
        if problem:
            self.notice.emit(f"Mask not loaded: {problem}")
            return False
        self.notice.emit(f"Mask: {Path(path).name}")
        return True

    def choose_mask(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Open a mask (white = repaint)", "", IMAGE_FILTER)
        if path:
            self.load_mask(path)

    # ---- the model's family, the form's size -------------------------------------------------------------

    def set_family(self, family: str, name: str = "") -> None:
        """Enable what the family can run; the tooltip names what it cannot."""
        image_ok, self._inpaint_ok, why = image_jobs(family, name)
        self.setEnabled(image_ok)
        self.setToolTip(why if not image_ok else "")
        self._why_not = why
        if not self._inpaint_ok:
            self.paint_button.setChecked(False)
        self.extend.setEnabled(self._inpaint_ok)
        self.extend.setToolTip(why.replace("Inpainting", "Outpainting") if not self._inpaint_ok else "")
        self._show_info()

    def follow_size(self, width_spin, height_spin) -> None:
        """Tell how the start image will be fitted to the form's width x height (less Extend's borders), and grow
        that size by what Extend adds."""
        self._size_spins = (width_spin, height_spin)

        def update(_value=None):
            self._target = (width_spin.value(), height_spin.value())
            self._show_info()

        width_spin.valueChanged.connect(update)
        height_spin.valueChanged.connect(update)
        update()

    # ---- the request -------------------------------------------------------------------------------------

    def request_fields(self) -> dict:
        """The request's start-image fields ({} without a start image, or for a family that cannot use one).
        A painted mask is written as a PNG into the work folder now; RequestError when it cannot be."""
        if self._path is None or not self.isEnabled():
            return {}
        fields = dict(init_image=str(self._path), strength=round(self.strength_spin.value(), 2),
                      init_fit=self.fit_combo.currentData())
        if self._inpaint_ok and self.extend.extending():  # outpainting: the painted mask is kept, not sent
            return dict(fields, outpaint=self.extend.value(), mask_blur=self.mask_blur_spin.value())
        if self._inpaint_ok and not self.layer.is_empty():
            folder = work_dir()
            try:
                mask = self.layer.save(folder)
            except OSError as exc:
                raise RequestError("mask", f"the painted mask could not be written into {folder} "
                                           f"({exc.strerror or exc})") from None
            fields.update(mask=str(mask), mask_blur=self.mask_blur_spin.value())
        return fields

    def apply(self, values: dict) -> list[str]:
        """The recipe's start image, mask, strength, feather and fit; returns what could not be restored (a
        start image or mask file that is gone, named)."""
        missing = []
        strength = values.get("strength")
        if isinstance(strength, (int, float)) and 0 < strength <= 1:
            self.strength_spin.setValue(float(strength))
        blur = values.get("mask_blur")
        if isinstance(blur, int) and 0 <= blur <= MAX_MASK_BLUR:
            self.mask_blur_spin.setValue(blur)
        if values.get("init_fit") in INIT_FITS:
            self.fit_combo.setCurrentIndex(self.fit_combo.findData(values["init_fit"]))
        if "init_image" not in values:
            return missing
        borders = values.get("outpaint") or (0, 0, 0, 0)
        if isinstance(borders, (list, tuple)) and len(borders) == 4 and all(
                isinstance(side, int) and 0 <= side <= MAX_OUTPAINT for side in borders):
            self._set_borders(tuple(borders))  # the recipe's size already holds them
        else:
            missing.append("outpaint")
        start, mask = values.get("init_image"), values.get("mask")
        if not start:
            self.clear()
            return missing
        if not (Path(str(start)).is_file() and self.set_image(start)):
            self.clear()
            return [f"start image {printable(str(start), 200)}"] + ([f"mask {printable(str(mask), 200)}"]
                                                                     if mask else [])
        self.layer.reset(self._image.size())
        if mask and not (Path(str(mask)).is_file() and self.load_mask(mask)):
            missing.append(f"mask {printable(str(mask), 200)}")
        return missing

    # ---- what the box shows ------------------------------------------------------------------------------

    def _set_borders(self, borders: tuple) -> None:
        """Extend's borders as they are, the form's size and the strength left alone (a recipe, Clear)."""
        self._borders = tuple(borders)
        self._strength_before = None
        self.extend.set_value(borders)

    def _on_extend(self) -> None:
        """Extend changed: the form's size grows (or shrinks) by the pixels added; starting to extend sets the
        strength to 1 (the new area is drawn from noise) and stopping gives the strength back; no mask is painted
        while extending."""
        borders = self.extend.value()
        before, self._borders = self._borders, borders
        if self._size_spins is not None and before != borders:
            for spin, (a, b) in zip(self._size_spins, ((0, 2), (1, 3))):
                spin.setValue(spin.value() + borders[a] + borders[b] - before[a] - before[b])
        if any(borders) and not any(before) and self._strength_before is None:
            self._strength_before = self.strength_spin.value()
            self.strength_spin.setValue(OUTPAINT_STRENGTH)
        elif not any(borders) and self._strength_before is not None:
            if self.strength_spin.value() == OUTPAINT_STRENGTH:
                self.strength_spin.setValue(self._strength_before)
            self._strength_before = None
        if any(borders):
            self.paint_button.setChecked(False)
        self._show_info()

    def _on_mask_changed(self) -> None:
        self._show_thumb()
        if self._path is None:
            return
        if self._inpaint_ok and self.extend.extending():
            self.mask_label.setText("Extending: the new area is drawn, the start image kept (the seam "
                                    "feathered); no mask")
        elif self.layer.is_empty():
            self.mask_label.setText("No mask: the whole image is redrawn")
        else:
            self.mask_label.setText(f"{self.layer.coverage():.0%} of the image is repainted; the rest is kept")

    def _show_info(self) -> None:
        has = self._path is not None
        self.settings.setVisible(has)
        self.clear_button.setEnabled(has)
        extending = self.extend.extending()
        self.paint_button.setEnabled(has and self._inpaint_ok and not extending)
        self.paint_button.setToolTip(self._why_not if not self._inpaint_ok else
                                     NO_PAINT_WHILE_EXTENDING if extending else PAINT_TIP)
        if not has:
            self.info_label.setText("None: the prompt starts from noise. Open or drop an image to start from it.")
        else:
            left, top, right, bottom = self.extend.value() if self._inpaint_ok else (0, 0, 0, 0)
            width, height = self._target[0] - left - right, self._target[1] - top - bottom
            size = (self._image.width(), self._image.height())
            fit = self.fit_combo.currentData()
            if size == (width, height):
                how = "used as it is"
            elif fit == "crop" and size[0] * height != size[1] * width:
                how = f"cropped to {width}×{height}"
            else:
                how = f"resized to {width}×{height}"
            if left + top + right + bottom:
                how += (f", extended to {self._target[0]}×{self._target[1]}" if min(width, height) >= 8 else
                        f": too small, the {self._target[0]}×{self._target[1]} size less Extend leaves "
                        f"{width}×{height}")
            name = self._path.name
            name = name if len(name) <= 32 else f"{name[:20]}…{name[-11:]}"
            self.info_label.setText(f"{name}\n{size[0]}×{size[1]}, {how}")
            self.info_label.setToolTip(str(self._path))
        self._on_mask_changed()

    def _show_thumb(self) -> None:
        if self._image is None:
            self.thumb.setPixmap(QPixmap())
            self.thumb.setText("Drop an image here")
            return
        small = self._image.scaled(QSize(THUMB - 4, THUMB - 4), Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.SmoothTransformation)
        picture = QPixmap.fromImage(small)
        mask = self.layer.image()
        if mask is not None and not self.layer.is_empty():
            painter = QPainter(picture)
            draw_mask(painter, picture.rect(), mask, False)
            painter.end()
        self.thumb.setPixmap(picture)

"""Dropping an AUTOMATIC1111 JPEG or WebP (``parameters`` in EXIF UserComment) on the window fills the form."""

from __future__ import annotations

import pytest
from PIL import Image

from desktop_app.gui.main_window import MainWindow

PARAMETERS = ("a fox in the snow\nNegative prompt: watermark\nSteps: 12, Sampler: DPM++ 2M, "
              "Schedule type: Karras, CFG scale: 4.5, Seed: 8080, Size: 48x40, Model: v1-5")


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("WEBP", ".webp")])
def test_dropping_an_automatic1111_jpeg_or_webp_fills_the_form(qtbot, make_engine, drop, tmp_path, fmt, suffix):
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + PARAMETERS.encode("utf-16-be")  # as AUTOMATIC1111 writes
    path = tmp_path / f"fox{suffix}"
    Image.new("RGB", (48, 40), (200, 90, 30)).save(path, format=fmt, exif=exif)

    engine = make_engine()
    window = MainWindow(engine_factory=lambda device: engine)
    qtbot.addWidget(window)
    window.show()
    try:
        assert drop(window, path)
        form = window.form
        assert form.prompt_edit.toPlainText() == "a fox in the snow"
        assert form.negative_edit.toPlainText() == "watermark"
        assert (form.width_spin.value(), form.height_spin.value(), form.steps_spin.value()) == (48, 40, 12)
        assert form.guidance_spin.value() == 4.5 and form.sampler_combo.currentText() == "DPM++ 2M Karras"
        assert not form.random_check.isChecked() and form.seed_spin.value() == 8080
        assert f"fox{suffix}" in window.statusBar().currentMessage()
    finally:
        window.close()

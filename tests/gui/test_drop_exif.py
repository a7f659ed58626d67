"""Dropping an AUTOMATIC1111 JPEG or WebP (``parameters`` in EXIF UserComment) on the window fills the form."""

from __future__ import annotations

import warnings

import pytest
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDragEnterEvent, QDropEvent
from PySide6.QtWidgets import QApplication

from desktop_app.gui.main_window import MainWindow

PARAMETERS = ("a fox in the snow\nNegative prompt: watermark\nSteps: 12, Sampler: DPM++ 2M, "
              "Schedule type: Karras, CFG scale: 4.5, Seed: 8080, Size: 48x40, Model: v1-5")


def drop(window, path) -> bool:
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    with warnings.catch_warnings():  # PySide marks the QPoint constructor deprecated; it is the one there is
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QDragEnterEvent(window.rect().center(), Qt.DropAction.CopyAction, mime,
                                Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, enter)
    event = QDropEvent(QPointF(window.rect().center()), Qt.DropAction.CopyAction, mime,
                       Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    QApplication.sendEvent(window, event)
    return enter.isAccepted()


@pytest.mark.parametrize("fmt,suffix", [("JPEG", ".jpg"), ("WEBP", ".webp")])
def test_dropping_an_automatic1111_jpeg_or_webp_fills_the_form(qtbot, make_engine, tmp_path, fmt, suffix):
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

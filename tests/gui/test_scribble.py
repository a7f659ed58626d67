"""Draw… a scribble for a ControlNet (gui/scribble_dialog.py): the person draws with the mouse (left draws,
right erases), OK writes white lines on black at the picture's size into the work folder, and the ControlNet
row takes it as its image with preprocessor "none"; Draw… again starts from that drawing."""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QMouseEvent
from PySide6.QtWidgets import QApplication, QDialogButtonBox
from test_control_rows import add_row, fake_controlnet, picture

from desktop_app import paths
from desktop_app.gui.control_rows import ControlRow
from desktop_app.gui.scribble_dialog import ScribbleDialog, is_scribble


def drag(widget, start: QPointF, end: QPointF, button=Qt.MouseButton.LeftButton, steps: int = 12) -> None:
    """A press, moves with the button held, and a release, as the mouse sends them."""
    def send(kind, point, buttons):
        QApplication.sendEvent(widget, QMouseEvent(kind, point, widget.mapToGlobal(point), button, buttons,
                                                   Qt.KeyboardModifier.NoModifier))

    send(QEvent.Type.MouseButtonPress, start, button)
    for k in range(1, steps + 1):
        send(QEvent.Type.MouseMove, start + (end - start) * (k / steps), button)
    send(QEvent.Type.MouseButtonRelease, end, Qt.MouseButton.NoButton)


def on_screen(pad, x: float, y: float) -> QPointF:
    """The pad's point over image pixel (x, y)."""
    rect, size = pad.image_rect(), pad.layer.size()
    return QPointF(rect.x() + (x + 0.5) * rect.width() / size.width(),
                   rect.y() + (y + 0.5) * rect.height() / size.height())


def test_drawing_with_the_mouse_writes_white_lines_on_black_at_the_pictures_size(qtbot):
    dialog = ScribbleDialog((64, 48))
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.waitExposed(dialog)
    ok = dialog.buttons.button(QDialogButtonBox.StandardButton.Ok)
    assert not ok.isEnabled()  # nothing drawn yet
    pad = dialog.pad
    drag(pad, on_screen(pad, 8, 24), on_screen(pad, 56, 24))
    drag(pad, on_screen(pad, 32, 4), on_screen(pad, 32, 44))
    drag(pad, on_screen(pad, 30, 40), on_screen(pad, 34, 44), Qt.MouseButton.RightButton)  # erase a bit
    assert ok.isEnabled() and dialog.undo_button.isEnabled()
    qtbot.mouseClick(ok, Qt.MouseButton.LeftButton)

    assert dialog.path is not None and dialog.path.parent == paths.work_dir() and is_scribble(str(dialog.path))
    drawn = np.asarray(Image.open(dialog.path).convert("L"))
    assert drawn.shape == (48, 64)
    assert drawn[24, 10:54].min() == 255 and drawn[6:20, 32].min() == 255  # both strokes, white
    assert drawn[42, 32] == 0  # erased by the right button
    assert drawn[2:10, 48:60].max() == 0 and drawn[40:, :20].max() == 0  # black away from the strokes
    assert set(np.unique(drawn)) <= {0, 255}


def test_undo_clear_and_starting_from_a_drawing(qtbot, tmp_path):
    dialog = ScribbleDialog((32, 32))
    qtbot.addWidget(dialog)
    dialog.show()
    pad = dialog.pad
    drag(pad, on_screen(pad, 4, 4), on_screen(pad, 28, 28))
    assert not dialog.layer.is_empty()
    qtbot.mouseClick(dialog.undo_button, Qt.MouseButton.LeftButton)
    assert dialog.layer.is_empty() and dialog.redo_button.isEnabled()
    qtbot.mouseClick(dialog.redo_button, Qt.MouseButton.LeftButton)
    assert not dialog.layer.is_empty()
    dialog._save()
    again = ScribbleDialog((32, 32), str(dialog.path))
    qtbot.addWidget(again)
    assert np.array_equal(again.layer.pixels(), dialog.layer.pixels())
    qtbot.mouseClick(again.clear_button, Qt.MouseButton.LeftButton)
    assert again.layer.is_empty()


def test_draw_in_a_controlnet_row_sets_its_image(qtbot, open_fake_window, make_engine, tmp_path, monkeypatch):
    fake_controlnet("scribbles")
    window = open_fake_window(make_engine())
    form = window.form
    row = add_row(qtbot, form, monkeypatch, "scribbles", picture(tmp_path / "edges.png"), preprocessor="canny")
    asked = []

    def draw(parent, size, start):
        asked.append((size, start))
        dialog = ScribbleDialog(size, start, parent)
        dialog.layer.begin_stroke(QPointF(2, 2))
        dialog.layer.stroke_to(QPointF(size[0] - 3, size[1] - 3))
        dialog.layer.end_stroke()
        dialog._save()
        return dialog.path, ""

    monkeypatch.setattr(ControlRow, "draw_dialog", staticmethod(draw))
    qtbot.mouseClick(row.draw_button, Qt.MouseButton.LeftButton)
    size = (form.width_spin.value(), form.height_spin.value())
    assert asked == [(size, None)]  # the picture's size; the Canny picture is not a drawing to start from
    control = form.build_request().controls[0]
    assert is_scribble(control.image) and control.preprocessor == "none"
    assert Image.open(control.image).size == size
    qtbot.mouseClick(row.draw_button, Qt.MouseButton.LeftButton)
    assert asked[1] == (size, control.image)  # Draw… again starts from the drawing

    monkeypatch.setattr(ControlRow, "draw_dialog", staticmethod(lambda parent, size, start: (None, "disk full")))
    qtbot.mouseClick(row.draw_button, Qt.MouseButton.LeftButton)
    assert row.image_label.text() == "drawing not saved" and row.image_label.toolTip() == "disk full"


def test_a_click_leaves_a_round_dot(qtbot):
    dialog = ScribbleDialog((32, 32))
    qtbot.addWidget(dialog)
    dialog.layer.brush = 6
    dialog.layer.begin_stroke(QPointF(16, 16))
    dialog.layer.end_stroke()
    pixels = dialog.layer.pixels()
    assert pixels[16, 16] == 255 and pixels[16, 14] == 255 and pixels[16, 22] == 0 and pixels[0, 0] == 0

"""The window's explain Export carries the creation record of the image explained: the image on the canvas (the
last run's, as kept, or one picked in the gallery) when it was made from the explained prompt. record.json and the
page "How this image was made" in index.html and report.pdf; none for an image of another prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PySide6.QtCore import Qt

from desktop_app.studio.explain_report import RECORD_TITLE
from tests.gui.test_explain_view import FakeExplain


def generate(qtbot, window, prompt: str, seed: int) -> Path:
    """Type the prompt and seed, press Ctrl+Enter; the file the run kept."""
    form = window.form
    form.prompt_edit.setPlainText(prompt)
    form.random_check.setChecked(False)
    form.seed_spin.setValue(seed)
    form.prompt_edit.setFocus()
    with qtbot.waitSignal(window.controller.kept, timeout=20_000) as blocker:
        qtbot.keyClick(form.prompt_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not window.controller.running, timeout=10_000)
    return Path(blocker.args[0][0])


def explain_and_export(qtbot, window, folder: Path) -> Path:
    view = window.explain_view
    view.explain_function = FakeExplain()
    window.menus.explain_action.trigger()
    with qtbot.waitSignal(view.ended, timeout=10_000) as blocker:
        qtbot.mouseClick(view.explain_button, Qt.MouseButton.LeftButton)
    assert blocker.args == ["finished"], view.message()
    assert view.export_to(folder) == folder / "index.html", view.message()
    return folder


@pytest.fixture
def window(open_fake_window):
    return open_fake_window()


def test_export_has_the_record_of_the_image_on_the_canvas(qtbot, window, tmp_path):
    pdfium = pytest.importorskip("pypdfium2")
    generate(qtbot, window, "a red fox in the snow", 3)
    kept = generate(qtbot, window, "a red fox in the snow", 7)

    folder = explain_and_export(qtbot, window, tmp_path / "report")

    record = json.loads((folder / "record.json").read_text(encoding="utf-8"))
    assert Path(record["image"]) == kept
    descriptions = [event["description"] for event in record["events"]]
    assert any("3" in text and "7" in text and "seed" in text for text in descriptions), descriptions
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert RECORD_TITLE in page and kept.name in page
    pdf = pdfium.PdfDocument(str(folder / "report.pdf"))
    last = pdf[len(pdf) - 1].get_textpage().get_text_range()
    assert last.splitlines()[0].strip() == RECORD_TITLE and kept.name in last
    assert f"the creation record of {kept.name}" in window.explain_view.message()


def test_an_image_of_another_prompt_gives_no_record(qtbot, window, tmp_path):
    generate(qtbot, window, "a red fox in the snow", 3)
    window.form.prompt_edit.setPlainText("a lighthouse at night")  # the report explains another image

    folder = explain_and_export(qtbot, window, tmp_path / "report")

    assert (folder / "index.html").is_file() and not (folder / "record.json").exists()
    assert RECORD_TITLE not in (folder / "index.html").read_text(encoding="utf-8")


def test_an_image_picked_in_the_gallery_gives_its_record(qtbot, window, tmp_path):
    first = generate(qtbot, window, "a blue kite", 5)
    generate(qtbot, window, "a green boat", 6)
    gallery = window.gallery
    item = next(gallery.list.item(k) for k in range(gallery.list.count())
                if "a blue kite" in gallery.list.item(k).toolTip())
    window.gallery_dock.show()
    window.gallery_dock.raise_()
    gallery.list.setCurrentItem(item)
    gallery.list.setFocus()
    with qtbot.waitSignal(gallery.image_chosen):  # Enter on the picked image shows it on the canvas
        qtbot.keyClick(gallery.list, Qt.Key.Key_Return)
    window.form.prompt_edit.setPlainText("a blue kite")

    folder = explain_and_export(qtbot, window, tmp_path / "report")

    record = json.loads((folder / "record.json").read_text(encoding="utf-8"))
    assert Path(record["image"]) == first

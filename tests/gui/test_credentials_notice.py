"""The window says, once and quietly, when its images go unsigned (content credentials off) and why."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt

from desktop_app.studio import credentials

REASON = ("content credentials are off: the c2pa-python package is not available; images are saved without a "
          "C2PA manifest")


@pytest.fixture
def reason(monkeypatch):
    """The reason ``credentials.off_reason`` gives: set ``reason["now"]`` (None: credentials are on)."""
    holder = {"now": None}
    monkeypatch.setattr(credentials, "off_reason", lambda: holder["now"])
    return holder


def test_the_window_shows_why_its_images_are_unsigned(qtbot, open_fake_window, reason):
    reason["now"] = REASON
    window = open_fake_window()
    label = window.labels.credentials_label
    qtbot.waitUntil(lambda: not label.isHidden())
    assert label.text() == "Unsigned images" and "c2pa-python package is not available" in label.toolTip()
    assert "c2pa-python package is not available" in window.statusBar().currentMessage()
    assert window.statusBar().currentMessage().startswith("Ready"), "added to the start-up message, not over it"
    # told once: a later look keeps the label and does not add the line again
    window.statusBar().showMessage("Done")
    window.labels.show_credentials()
    assert window.statusBar().currentMessage() == "Done" and not label.isHidden()


def test_with_credentials_on_nothing_is_shown(qtbot, open_fake_window, reason):
    window = open_fake_window()
    qtbot.wait(50)  # the start-up look has run
    assert window.labels.credentials_label.isHidden()
    assert "credentials" not in window.statusBar().currentMessage().lower()


def test_credentials_that_fail_while_saving_are_shown_after_the_run(qtbot, open_fake_window, reason):
    window = open_fake_window()
    qtbot.wait(50)
    label = window.labels.credentials_label
    assert label.isHidden()
    reason["now"] = REASON  # signing the images of this run fails
    window.form.prompt_edit.setFocus()
    qtbot.keyClicks(window.form.prompt_edit, "a kite")
    with qtbot.waitSignal(window.controller.kept, timeout=20_000):
        qtbot.keyClick(window.form.prompt_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert not label.isHidden() and "c2pa-python" in label.toolTip()
    assert "c2pa-python" in window.statusBar().currentMessage()

"""The Download dialog against a local fake hub: progress, a library entry at the end, cancel, errors."""

from __future__ import annotations

import pytest
from fake_hub import TINY_SD_REPO as REPO

from desktop_app.models import model_library
from desktop_app.gui.download_dialog import DownloadDialog


@pytest.fixture
def hub(tiny_sd_hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 512)  # many progress steps from a tiny repo
    return tiny_sd_hub


@pytest.fixture
def dialog(qtbot):
    widget = DownloadDialog()
    qtbot.addWidget(widget)
    yield widget
    widget.close()


def test_download_shows_progress_and_adds_the_model(hub, dialog, qtbot):
    values = []
    dialog.worker.progress.connect(lambda done, total: values.append(done))
    dialog.repo.setText(REPO)
    with qtbot.waitSignal(dialog.downloaded, timeout=60_000) as signal:
        dialog.download_button.click()
        assert not dialog.download_button.isEnabled() and dialog.cancel_button.isEnabled()
    assert signal.args == ["tiny-sd"]
    assert len(values) > 10 and values == sorted(values)
    assert dialog.bar.value() == dialog.bar.maximum()
    assert "as tiny-sd" in dialog.status.text()
    entry = model_library.find("tiny-sd")
    assert entry is not None and entry.source == "downloaded" and entry.kind == "diffusers"
    assert dialog.download_button.isEnabled()


def test_cancel_keeps_the_library_unchanged(hub, dialog, qtbot):
    dialog.worker.progress.connect(lambda done, total: dialog.cancel() if done > 0 else None)
    dialog.repo.setText(REPO)
    dialog.download_button.click()
    # the worker's signals reach the dialog queued: wait for what the dialog shows, not for the worker
    qtbot.waitUntil(lambda: "Cancelled" in dialog.status.text(), timeout=60_000)
    assert model_library.find("tiny-sd") is None
    assert dialog.download_button.isEnabled()


def test_bad_repo_id_and_unknown_repo_are_one_line(hub, dialog, qtbot):
    dialog.repo.setText("no slash here")
    dialog.download_button.click()
    assert "owner/name" in dialog.status.text()
    dialog.repo.setText("someone/missing")
    dialog.download_button.click()
    qtbot.waitUntil(lambda: "not on the hub" in dialog.status.text(), timeout=60_000)
    assert "Traceback" not in dialog.status.text() and dialog.download_button.isEnabled()

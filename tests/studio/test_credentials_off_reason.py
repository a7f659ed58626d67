"""``credentials.off_reason``: why images go unsigned, for the window, known before the first image is signed when
a package is missing (looked for, not imported), and None when the person turned credentials off themselves."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from desktop_app.studio import credentials


@pytest.fixture(autouse=True)
def nothing_signed_yet(monkeypatch):
    monkeypatch.setitem(credentials._state, "off", None)
    monkeypatch.setitem(credentials._state, "told", set())


def test_a_missing_package_is_known_before_any_image(monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "c2pa", None)  # as if c2pa-python were not installed
    with caplog.at_level(logging.WARNING, logger=credentials.__name__):
        line = credentials.off_reason()
    assert line is not None and "c2pa-python" in line and "\n" not in line
    assert line.startswith("content credentials are off:") and "without a C2PA manifest" in line
    assert caplog.records == [] and credentials._state["off"] is None, "a look, not a failure to tell"


def test_with_the_packages_there_credentials_are_on():
    pytest.importorskip("c2pa")
    assert credentials.off_reason() is None


def test_the_persons_own_setting_is_not_a_reason(monkeypatch, user_home):
    monkeypatch.setitem(sys.modules, "c2pa", None)
    user_home.mkdir(parents=True, exist_ok=True)
    from desktop_app.paths import settings_path

    settings_path().write_text(json.dumps({"content_credentials": False}), encoding="utf-8")
    assert credentials.off_reason() is None


def test_a_failed_signing_is_the_reason_given(monkeypatch):
    monkeypatch.setitem(sys.modules, "c2pa", None)
    assert credentials.sign_bytes(b"not an image", "image/png", {}, "x.png") is None
    assert "c2pa-python package is not available (" in credentials.off_reason()

"""`desktop-app models download REPO_ID` against a local fake hub."""

from __future__ import annotations

import json
import shutil

import pytest
from fake_hub import FakeHub

from desktop_app.cli import main

REPO = "someone/tiny-sd"


@pytest.fixture
def hub(tiny_sd_dir, tmp_path, monkeypatch):
    from huggingface_hub import constants

    folder = tmp_path / "repo"
    shutil.copytree(tiny_sd_dir, folder)
    server = FakeHub(REPO, folder).start()
    # what cli.main does when the user has not set HF_HUB_OFFLINE: offline, marked as the app's default
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("DESKTOP_APP_DEFAULT_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf-cache"))  # the library lists no real cache
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    yield server
    server.stop()


def test_download_adds_the_model_to_the_library(hub, capsys):
    assert main(["models", "download", REPO]) == 0
    out = capsys.readouterr()
    assert "downloaded someone/tiny-sd as tiny-sd" in out.out
    assert "100.0%" in out.err
    assert main(["models", "list", "--json"]) == 0
    entries = {e["name"]: e for e in json.loads(capsys.readouterr().out)}
    assert entries["tiny-sd"]["source"] == "downloaded"
    assert entries["tiny-sd"]["kind"] == "diffusers"
    assert entries["tiny-sd"]["path"].endswith("someone--tiny-sd")
    # a second run finds the folder and the entry: nothing downloaded twice
    served = dict(hub.served)
    assert main(["models", "download", REPO]) == 0
    assert hub.served == served


def test_user_offline_setting_wins(hub, monkeypatch, capsys):
    monkeypatch.delenv("DESKTOP_APP_DEFAULT_OFFLINE")  # HF_HUB_OFFLINE=1 is now the user's own choice
    assert main(["models", "download", REPO]) == 2
    err = capsys.readouterr().err
    assert "offline mode is on" in err and "Traceback" not in err
    assert hub.requests == []


def test_unknown_repo_exits_2(hub, capsys):
    assert main(["models", "download", "someone/missing"]) == 2
    assert "not on the hub" in capsys.readouterr().err

"""`desktop-app models download REPO_ID` against a local fake hub."""

from __future__ import annotations

import json

from fake_hub import TINY_SD_REPO as REPO

from desktop_app.cli import main


def test_download_adds_the_model_to_the_library(tiny_sd_hub, capsys):
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
    served = dict(tiny_sd_hub.served)
    assert main(["models", "download", REPO]) == 0
    assert tiny_sd_hub.served == served


def test_user_offline_setting_wins(tiny_sd_hub, monkeypatch, capsys):
    monkeypatch.delenv("DESKTOP_APP_DEFAULT_OFFLINE")  # HF_HUB_OFFLINE=1 is now the user's own choice
    assert main(["models", "download", REPO]) == 2
    err = capsys.readouterr().err
    assert "offline mode is on" in err and "Traceback" not in err
    assert tiny_sd_hub.requests == []


def test_unknown_repo_exits_2(tiny_sd_hub, capsys):
    assert main(["models", "download", "someone/missing"]) == 2
    assert "not on the hub" in capsys.readouterr().err

"""The per-user folder (platformdirs, or DESKTOP_APP_HOME) and the folders and files inside it.

Each function creates its folder on demand, so callers can write straight away.
"""

from __future__ import annotations

import os
from pathlib import Path

from desktop_app.resources import default_model_dir  # noqa: F401 - re-exported: the window looks it up here

APP_NAME = "desktop-app"


def home() -> Path:
    override = os.environ.get("DESKTOP_APP_HOME")
    if override:
        folder = Path(override).expanduser()
    else:
        from platformdirs import user_data_dir

        folder = Path(user_data_dir(APP_NAME, appauthor=False))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _sub(name: str) -> Path:
    folder = home() / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def models_dir() -> Path:
    return _sub("models")


def upscalers_dir() -> Path:
    """Super-resolution models the user added (.safetensors or .pth): ``--model NAME`` finds NAME here."""
    folder = models_dir() / "upscalers"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def loras_dir() -> Path:
    return _sub("loras")


def outputs_dir() -> Path:
    return _sub("outputs")


def logs_dir() -> Path:
    return _sub("logs")


def settings_path() -> Path:
    """settings.json in the user folder (the folder is created; the file is not)."""
    return home() / "settings.json"

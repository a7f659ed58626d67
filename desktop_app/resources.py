"""Where the shipped data lives: resources/ next to the package, or DESKTOP_APP_RESOURCES."""

from __future__ import annotations

import os
import sys
from pathlib import Path

DEFAULT_MODEL_NAME = "emoji-mini"
DEFAULT_MODEL = "default"  # what a request, the command line and the library call the embedded model


def resources_dir() -> Path:
    override = os.environ.get("DESKTOP_APP_RESOURCES")
    if override:
        return Path(override).expanduser()
    if getattr(sys, "frozen", False):  # a PyInstaller bundle: resources/ sits in its data folder
        return Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent)) / "resources"
    return Path(__file__).resolve().parents[1] / "resources"


def default_model_dir() -> Path:
    """The embedded default model's folder (it may not exist yet: the loader says so clearly)."""
    return resources_dir() / "models" / DEFAULT_MODEL_NAME

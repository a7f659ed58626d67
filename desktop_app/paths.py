"""The per-user folder (platformdirs, or DESKTOP_APP_HOME) and the folders and files inside it.

Each function creates its folder on demand, so callers can write straight away.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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


# ---- one atomic writer for small text files (settings, the library, caches) ----

def write_text_atomically(path: Path, text: str, prefix: str = ".tmp-") -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=prefix, suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


# ---- a throw-away user folder (selftest, benchmarks): never the user's own ----

VARIABLE = "DESKTOP_APP_HOME"


@contextmanager
def temporary_home(prefix: str = "desktop-app-selftest-") -> Iterator[Path]:
    previous = os.environ.get(VARIABLE)
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ[VARIABLE] = str(folder)
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop(VARIABLE, None)
        else:
            os.environ[VARIABLE] = previous
        shutil.rmtree(folder, ignore_errors=True)  # best effort: a handle still open on Windows keeps a file

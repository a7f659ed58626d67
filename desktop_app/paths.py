"""The per-user folder (platformdirs, or DESKTOP_APP_HOME) and the folders and files inside it.

Each function creates its folder on demand, so callers can write straight away.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

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


def preprocessors_dir(kind: str) -> Path:
    """The models a ControlNet preprocessor reads (``kind``: "depth"): ``<user folder>/models/preprocessors/KIND``,
    one transformers folder each (engine/control_models.py)."""
    folder = models_dir() / "preprocessors" / kind
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def loras_dir() -> Path:
    return _sub("loras")


def outputs_dir() -> Path:
    return _sub("outputs")


def logs_dir() -> Path:
    return _sub("logs")


def work_dir() -> Path:
    """Files the window writes for a request: painted masks, a canvas image used as the start image. Those
    older than a week that no history entry's recipe names are removed at the window's start
    (studio/work_cleanup.py)."""
    return _sub("work")


def compiled_dir() -> Path:
    """Models converted for this machine (the OpenVINO UNet of engine/openvino_path.py), each in a folder keyed
    by the weights' hash and the library versions: safe to delete, they convert again when next needed."""
    folder = home() / "cache" / "openvino"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def settings_path() -> Path:
    """settings.json in the user folder (the folder is created; the file is not)."""
    return home() / "settings.json"


# ---- one atomic writer: settings, the library, caches, images, animations, checkpoints ----

def write_atomically(path: Path, write: Callable[[BinaryIO], None], prefix: str = ".tmp-",
                     suffix: str | None = None, mode: int | None = None) -> Path:
    """Write ``path`` all at once or not at all: ``write(handle)`` fills a temporary file in the same folder
    (``prefix`` + random + ``suffix``, default ``path``'s own suffix), which is flushed to disk, given ``mode``
    (default: the replaced file's permissions, else those of any new file under the umask: mkstemp's 0600
    would hide the file from the user's other accounts), then renamed over ``path``; the folder is synced
    so the rename lasts (POSIX, best effort). On any error the temporary file is removed and the error
    propagates: the old file stays whole and no partial file is left under either name. The folder must
    exist."""
    path = Path(path)
    mode = new_file_mode(path) if mode is None else mode
    handle, temp = tempfile.mkstemp(prefix=prefix, suffix=path.suffix if suffix is None else suffix,
                                    dir=path.parent)
    os.close(handle)
    try:
        with open(temp, "wb") as stream:  # opened by name: ``stream.name`` is the temporary file's path
            write(stream)
            stream.flush()
            if hasattr(os, "fchmod"):
                os.fchmod(stream.fileno(), mode)
            os.fsync(stream.fileno())  # the rename must never publish bytes still in the page cache
        if not hasattr(os, "fchmod"):
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    sync_folder(path.parent)
    return path


def write_text_atomically(path: Path, text: str, prefix: str = ".tmp-") -> None:
    """``text`` as UTF-8 through ``write_atomically``; the folder is made when missing."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8")
    write_atomically(path, lambda stream: stream.write(data), prefix=prefix)


def new_file_mode(path: Path) -> int:
    """The permissions of the file ``path`` names, or those a plain ``open()`` would give a new one (0o666
    less the umask)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (os.umask is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable (POSIX); best effort, never raises."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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

"""Settings kept between runs: ``paths.settings_path()`` (JSON), written atomically.

A settings file that cannot be read or parsed must never stop the app: it is moved aside as
``settings.json.broken-<time>``, the app starts on defaults, and ``load`` returns a notice to show once.
No Qt here: the window stores its geometry as base64 text.
"""

from __future__ import annotations

import json
import os
from datetime import datetime
from pathlib import Path

from desktop_app.paths import write_text_atomically

VERSION = 1
THEMES = ("system", "dark", "light")
DEFAULTS: dict = {
    "version": VERSION,
    "output_dir": None,  # None: the default folder (outputs.default_output_dir())
    "theme": "system",
    "last_request": None,  # GenerationRequest fields of the last run
    "runs": 1,
    "geometry": None,  # QMainWindow.saveGeometry(), base64
    "window_state": None,  # QMainWindow.saveState() (docks), base64
    "content_credentials": True,  # sign every image with a C2PA manifest (studio/credentials.py reads it)
}


def defaults() -> dict:
    return json.loads(json.dumps(DEFAULTS))


MAX_BYTES = 1 << 20  # settings are a few kilobytes; anything this large is not ours


def _text(value) -> bool:
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")  # a lone surrogate ("\udcff" in JSON) is no path and no text
    except UnicodeEncodeError:
        return False
    return True


def _folder(value) -> bool:
    return value is None or (_text(value) and bool(value.strip()) and len(value) < 4096)


def _base64(value) -> bool:
    return value is None or (isinstance(value, str) and value.isascii() and len(value) < MAX_BYTES)


def _runs(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 999


# field -> whether a stored value can be used; a value that cannot falls back to that field's default
VALID = {
    "version": lambda value: True,
    "output_dir": _folder,
    "theme": lambda value: value in THEMES,
    "last_request": lambda value: value is None or (isinstance(value, dict)
                                                    and all(isinstance(key, str) for key in value)),
    "runs": _runs,
    "geometry": _base64,
    "window_state": _base64,
    "content_credentials": lambda value: isinstance(value, bool),
}
QUIET = ("version", "theme")  # an unknown theme (a newer version's) falls back without a word


def load(path: Path | None = None) -> tuple[dict, str | None]:
    """(settings, notice). notice is None normally; a sentence for the user when the file was broken (moved
    aside) or held values of the wrong kind (each such field falls back to its default)."""
    path = Path(path) if path is not None else _default_path()
    data = defaults()
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
        if len(raw) > MAX_BYTES:
            return data, _move_aside(path, "larger than 1 MB")
        text = raw.decode("utf-8")
    except FileNotFoundError:
        return data, None
    except (OSError, UnicodeDecodeError) as exc:
        return data, _move_aside(path, getattr(exc, "strerror", None) or str(exc))
    try:
        stored = json.loads(text)
        if not isinstance(stored, dict):
            raise ValueError("not a JSON object")
    except RecursionError:
        return data, _move_aside(path, "nested too deeply")
    except ValueError as exc:
        return data, _move_aside(path, f"not valid settings ({exc})")
    reset = []
    for key, value in stored.items():
        if key not in data:
            continue
        if VALID[key](value):
            data[key] = value
        elif key not in QUIET:
            reset.append(key)
    data["version"] = VERSION
    if reset:
        return data, (f"Some settings were not valid and were reset to their defaults: {', '.join(reset)}. "
                      "The other settings were kept.")
    return data, None


def save(data: dict, path: Path | None = None) -> None:
    """Write atomically: a crash mid-write leaves the previous file, never half of a new one."""
    path = Path(path) if path is not None else _default_path()
    text = json.dumps({**data, "version": VERSION}, indent=2, sort_keys=True, default=str)
    write_text_atomically(path, text, prefix=".settings-")


def _move_aside(path: Path, reason: str) -> str:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.broken-{stamp}")
    try:
        os.replace(path, aside)
        where = f"It was moved to {aside}."
    except OSError:
        where = "It could not be moved aside and will be replaced when settings are saved."
    return f"The settings file could not be read ({reason}); starting with default settings. {where}"


def _default_path() -> Path:
    from desktop_app.paths import settings_path

    return settings_path()

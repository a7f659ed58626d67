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

from .atomic_write import write_text_atomically

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
}


def defaults() -> dict:
    return json.loads(json.dumps(DEFAULTS))


def load(path: Path | None = None) -> tuple[dict, str | None]:
    """(settings, notice). notice is None normally; a sentence for the user when the file was broken."""
    path = Path(path) if path is not None else _default_path()
    data = defaults()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return data, None
    except (OSError, UnicodeDecodeError) as exc:
        return data, _move_aside(path, getattr(exc, "strerror", None) or str(exc))
    try:
        stored = json.loads(text)
        if not isinstance(stored, dict):
            raise ValueError("not a JSON object")
    except ValueError as exc:
        return data, _move_aside(path, f"not valid settings ({exc})")
    for key, value in stored.items():
        if key in data:
            data[key] = value
    if data.get("theme") not in THEMES:
        data["theme"] = "system"
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
    from .paths import settings_path

    return settings_path()

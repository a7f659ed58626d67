"""What the window keeps between starts (``studio.settings``): the stored values put back into the window,
the window's layout stored again, and what to tell when damaged settings or history had to be reset."""

from __future__ import annotations

from PySide6.QtCore import QByteArray
from PySide6.QtWidgets import QMainWindow

from desktop_app.studio import settings as app_settings


def restore(settings: dict, form, window: QMainWindow) -> str | None:
    """Put the stored settings into the form and the window's layout; a value that cannot be used is dropped
    (never a failed start). Returns a sentence naming what was dropped, or None."""
    steps = (("last_request", lambda value: form.apply_request(value) if isinstance(value, dict) else None),
             ("runs", lambda value: form.runs_spin.setValue(value) if isinstance(value, int) else None),
             ("geometry", lambda value: window.restoreGeometry(QByteArray.fromBase64(value.encode("ascii")))
              if isinstance(value, str) else None),
             ("window_state", lambda value: window.restoreState(QByteArray.fromBase64(value.encode("ascii")))
              if isinstance(value, str) else None))
    dropped = []
    for key, apply in steps:
        try:
            apply(settings.get(key))
        except Exception:  # noqa: BLE001 - a stored value must never stop the window from starting
            settings[key] = app_settings.DEFAULTS.get(key)
            dropped.append(key)
    return f"Stored settings that could not be used were reset: {', '.join(dropped)}." if dropped else None


def store(settings: dict, window: QMainWindow) -> str | None:
    """Save the settings with the window's layout; a sentence for the status bar when that failed."""
    settings["geometry"] = bytes(window.saveGeometry().toBase64()).decode("ascii")
    settings["window_state"] = bytes(window.saveState().toBase64()).decode("ascii")
    try:
        app_settings.save(settings)
    except OSError as exc:
        return f"Settings not saved: {exc.strerror or exc}"
    return None


def startup_message(settings_notice: str | None, history_notice: str | None) -> tuple[str, str, str] | None:
    """(title, text, status bar message) about what was reset at start, or None when nothing was."""
    if settings_notice and history_notice:
        return ("Settings and history were reset", f"{settings_notice} {history_notice}",
                "Settings and history were reset: see the message above")
    if history_notice:
        return "History was reset", history_notice, "The history was reset: see the message above"
    if settings_notice:
        return "Settings were reset", settings_notice, "Settings were reset to defaults"
    return None

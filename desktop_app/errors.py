"""Errors raised on purpose, below every room (engine, models, studio, cli, gui): each carries a message a user
can read. ``printable`` makes text from a file or the user safe to show on one line."""

from __future__ import annotations

import unicodedata


class EngineError(Exception):
    """Base class: anything that should reach the user as a readable message."""


class RequestError(EngineError, ValueError):
    """A request field has a bad value. ``field`` names it; the message gives the allowed values."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class ModelError(EngineError):
    """A model cannot be found, is not a supported format, or its files are damaged."""


class CancelledError(EngineError):
    """The user cancelled the job."""


class OutOfMemory(EngineError):
    """The device ran out of memory even in the lightest mode (see memory.py); the message says what was
    tried."""


def printable(text: object, limit: int = 200) -> str:
    """``text`` on one line, control characters escaped (a name from a file cannot move the cursor or end
    the line), cut to ``limit`` characters; quoted when anything was escaped."""
    text = str(text)
    out, escaped = [], False
    for char in text[: limit + 1]:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Zl", "Zp") or char == "\\":
            out.append(repr(char)[1:-1] if char != "\\" else "\\\\")
            escaped = escaped or char != "\\"
        else:
            out.append(char)
    shown = "".join(out)
    if len(text) > limit:
        shown = shown[:limit] + "..."
    return repr(text[:limit]) if escaped else shown

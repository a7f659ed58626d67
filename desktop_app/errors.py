"""Errors raised on purpose, below every room (engine, models, studio, cli, gui): each carries a message a user
can read. ``printable`` makes text from a file or the user safe to show on one line."""

from __future__ import annotations

import errno
import unicodedata
from enum import Enum
from pathlib import Path


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



# ---- one classification of failures, one one-line message, one traceback log ---------------------------


class FailureKind(str, Enum):
    """Why a job stopped. The window's worker signals, the command line's exit codes, the training process's
    JSON lines and the download worker all speak these values (they are the wire values too)."""

    BAD_INPUT = "bad_input"  # a request field, a file or a name the user gave
    MODEL_DAMAGED = "model"  # a model missing, of an unsupported kind, or damaged
    OUT_OF_MEMORY = "out_of_memory"
    DISK = "disk"  # the disk is full, read-only or refuses the write
    CANCELLED = "cancelled"
    ENGINE = "engine"  # an EngineError raised on purpose: a readable stop that is not the user's input
    INTERNAL = "internal"  # anything else: a bug; the traceback goes to the log

    @property
    def exit_code(self) -> int:
        """The command line's exit status: 2 for what the user can fix in the command, 130 for a cancel,
        1 otherwise."""
        return {FailureKind.BAD_INPUT: 2, FailureKind.MODEL_DAMAGED: 2, FailureKind.CANCELLED: 130}.get(self, 1)

    @property
    def readable(self) -> bool:
        """The exception's own message is meant for a person (no traceback needed)."""
        return self is not FailureKind.INTERNAL


# ENOSPC, EDQUOT (a full disk or quota), EROFS (read-only), EFBIG (file too large)
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG})


def is_out_of_memory(exc: BaseException) -> bool:
    """Out of memory, found by the exception's type: MemoryError, OutOfMemory (every lighter mode was tried)
    and torch's OutOfMemoryError (``torch.OutOfMemoryError``, ``torch.cuda.OutOfMemoryError``: matched by class
    name in the MRO, so that torch is not imported here). Never by the message text."""
    if isinstance(exc, (MemoryError, OutOfMemory)):
        return True
    return any(cls.__name__ == "OutOfMemoryError" for cls in type(exc).__mro__)


def is_disk_full(exc: BaseException) -> bool:
    """A write refused by the disk (full, over quota, read-only), on ``exc`` or the error it was raised from."""
    for item in (exc, exc.__cause__):
        if isinstance(item, OSError) and item.errno in _DISK_ERRNOS:
            return True
    return False


def failure_kind(exc: BaseException) -> FailureKind:
    """The one classification. Order matters: a RequestError is also a ValueError, OutOfMemory also an
    EngineError."""
    if isinstance(exc, CancelledError):
        return FailureKind.CANCELLED
    if isinstance(exc, RequestError):
        return FailureKind.BAD_INPUT
    if isinstance(exc, ModelError):
        return FailureKind.MODEL_DAMAGED
    if is_out_of_memory(exc):
        return FailureKind.OUT_OF_MEMORY
    if is_disk_full(exc):
        return FailureKind.DISK
    if isinstance(exc, EngineError):
        return FailureKind.ENGINE
    return FailureKind.INTERNAL


def one_line(exc: BaseException, limit: int = 240) -> str:
    """``Type: message`` on one line (whitespace runs folded), cut to ``limit`` characters."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def log_traceback(exc: BaseException, label: str = "", folder: Path | None = None) -> Path | None:
    """Append ``exc``'s traceback to ``errors.log`` in ``folder`` (default: the user's logs folder), under a
    time stamp, the version and ``label``; the log file's path, or None when it cannot be written (never
    raises: it runs while something else already failed)."""
    import traceback
    from datetime import datetime

    import desktop_app

    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        if folder is None:
            from desktop_app.paths import logs_dir

            folder = Path(logs_dir())
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "errors.log"
        with path.open("a", encoding="utf-8") as handle:
            stamp = datetime.now().isoformat(timespec="seconds")
            handle.write(f"--- {stamp} desktop-app {desktop_app.__version__} {label}".rstrip() + f"\n{text}\n")
        return path
    except OSError:
        return None

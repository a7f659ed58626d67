"""Exit codes, the bad-input error and the one-line messages every command uses. Command modules import
this, never ``desktop_app.cli`` itself."""

from __future__ import annotations

import argparse
import sys

from desktop_app.errors import EngineError, FailureKind, failure_kind, log_traceback, one_line, printable

PROG = "desktop-app"
EXIT_OK = 0
EXIT_FAILED = FailureKind.INTERNAL.exit_code  # 1
EXIT_BAD_INPUT = FailureKind.BAD_INPUT.exit_code  # 2: BadInput too
EXIT_INTERRUPTED = FailureKind.CANCELLED.exit_code  # 130


class BadInput(Exception):
    """A command-line mistake found after parsing (exit 2)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + error
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def report_failure(exc: BaseException) -> int:
    """One line on stderr for a failure that reached the top of a command, and its exit code
    (``FailureKind.exit_code``: 2 for what the user can fix in the command, 130 for a cancel, 1 otherwise).
    What is not an EngineError leaves its traceback in the log; only a bug (INTERNAL) names the log."""
    kind = failure_kind(exc)
    log_file = None if isinstance(exc, EngineError) else log_traceback(exc)
    if kind is FailureKind.CANCELLED:
        print(f"{PROG}: cancelled", file=sys.stderr)
    elif kind.readable:
        print(f"{PROG}: error: {_readable(exc, kind)}", file=sys.stderr)
    else:
        where = f" (details in {log_file})" if log_file else ""
        print(f"{PROG}: failed: {one_line(exc, 1000)}{where}", file=sys.stderr)
    return kind.exit_code


def _readable(exc: BaseException, kind: FailureKind) -> str:
    """The message a person reads: an EngineError's own; for an out-of-memory or a refused write from deeper
    down (torch, the file system), a line that names the problem and what to try."""
    if isinstance(exc, EngineError):
        return " ".join(str(exc).split())
    if kind is FailureKind.OUT_OF_MEMORY:
        detail = " ".join(str(exc).split())
        detail = f" ({printable(detail, 200)})" if detail else ""
        return (f"out of memory{detail}: choose a smaller image, fewer images at once or fewer hires steps, "
                "or close other programs using the device")
    if kind is FailureKind.DISK:
        error = exc if isinstance(exc, OSError) and exc.errno is not None else exc.__cause__
        reason = getattr(error, "strerror", None) or str(error)
        name = getattr(error, "filename", None)
        where = f" {printable(name, 200)}" if name else ""
        return f"could not write{where}: {reason} (free some disk space or choose another place)"
    return " ".join(str(exc).split())

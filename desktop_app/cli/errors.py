"""Exit codes, the bad-input error and the one-line messages every command uses. Command modules import
this, never ``desktop_app.cli`` itself."""

from __future__ import annotations

import argparse
import sys
import traceback
from datetime import datetime
from pathlib import Path

import desktop_app


PROG = "desktop-app"
EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class BadInput(Exception):
    """A command-line mistake found after parsing (exit 2)."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line instead of usage + error
        self.exit(EXIT_BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def report_failure(exc: BaseException) -> int:
    from desktop_app.errors import EngineError, ModelError, RequestError

    message = " ".join(str(exc).split())
    if isinstance(exc, (RequestError, ModelError)):
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if isinstance(exc, EngineError):
        print(f"{PROG}: error: {message}", file=sys.stderr)
        return EXIT_FAILED
    log_file = log_traceback(exc)
    where = f" (details in {log_file})" if log_file else ""
    print(f"{PROG}: failed: {type(exc).__name__}: {message}{where}", file=sys.stderr)
    return EXIT_FAILED


def log_traceback(exc: BaseException) -> Path | None:
    try:
        from desktop_app.paths import logs_dir

        path = logs_dir() / "errors.log"
        with path.open("a", encoding="utf-8") as handle:
            stamp = datetime.now().isoformat(timespec="seconds")
            handle.write(f"--- {stamp} {PROG} {desktop_app.__version__}\n")
            handle.write("".join(traceback.format_exception(type(exc), exc, exc.__traceback__)) + "\n")
        return path
    except OSError:
        return None


def one_line(exc: BaseException) -> str:
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__

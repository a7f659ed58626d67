"""Exactly one terminal event per job: ``Finished``, ``Cancelled`` or ``Failed``, emitted just before the job
returns or raises. Torch-free.

    with Outcome(emit) as outcome:
        ... the job's steps; a CancelledError anywhere in them means cancelled ...
        outcome.result = Finished(...)
    return outcome.result  # None when cancelled

The return value and the exception stay the outcome for callers (the worker, the command line): the terminal
events are for those that only listen (a log, a display).
"""

from __future__ import annotations

from desktop_app.engine.events import Cancelled, Emit, Failed, Finished
from desktop_app.errors import CancelledError, failure_kind, one_line


class Outcome:
    """The context manager above. A CancelledError is swallowed (the job returns None after Cancelled); any
    other Exception is announced as Failed(kind, message) and propagates unchanged."""

    def __init__(self, emit: Emit):
        self.emit = emit
        self.result: Finished | None = None

    def __enter__(self) -> Outcome:
        return self

    def __exit__(self, kind, exc, traceback) -> bool:
        if exc is None:
            self.emit(self.result if self.result is not None else Cancelled())
            return False
        if isinstance(exc, CancelledError):
            self.result = None
            self.emit(Cancelled())
            return True
        if isinstance(exc, Exception):
            self.emit(failed(exc))
        return False  # KeyboardInterrupt, SystemExit: no event, the process is going away


def failed(exc: BaseException) -> Failed:
    """The Failed event for ``exc``: its kind, and its own message when that is meant for a person (one line
    with the exception's type otherwise)."""
    kind = failure_kind(exc)
    return Failed(kind=kind, message=str(exc) if kind.readable else one_line(exc))

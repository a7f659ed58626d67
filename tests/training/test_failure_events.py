"""The training process's "failed" events speak FailureKind values (the window's reader and the command line
use the same enum): out of memory found by the exception's type, never by its message."""

from __future__ import annotations

import errno
import json
import os
import sys

import pytest

from desktop_app.errors import FailureKind, ModelError, OutOfMemory, RequestError
from desktop_app.training import run
from desktop_app.training.config import TrainConfig
from desktop_app.training.dataset import DatasetError
from desktop_app.training.errors import TrainingError


class OutOfMemoryError(RuntimeError):
    """Named as torch's (torch.OutOfMemoryError is a RuntimeError)."""


def failing_run(monkeypatch, capfd, tmp_path, exc: BaseException) -> tuple[int, dict]:
    """run.main with the job's config raising ``exc`` as it loads; its exit code and its one event."""

    def load(path):
        raise exc

    monkeypatch.setattr(TrainConfig, "load", staticmethod(load))
    monkeypatch.setattr(sys, "stdout", sys.stdout)  # run.main points sys.stdout at stderr: restored after
    code = run.main(["--config", str(tmp_path / "job.json")])
    [line] = capfd.readouterr().out.splitlines()  # nothing but the JSON line on stdout
    return code, json.loads(line)


@pytest.mark.parametrize("exc,kind,code", [
    (RequestError("steps", "must be a whole number"), FailureKind.BAD_INPUT, 2),
    (ModelError("Model not found: /nowhere does not exist."), FailureKind.BAD_INPUT, 2),
    (DatasetError("the folder has no PNG, JPEG or WebP images"), FailureKind.BAD_INPUT, 2),
    (OutOfMemoryError("CUDA error: allocation failed"), FailureKind.OUT_OF_MEMORY, 1),
    (OutOfMemory("The CUDA ran out of memory even with every lighter mode"), FailureKind.OUT_OF_MEMORY, 1),
    (MemoryError(), FailureKind.OUT_OF_MEMORY, 1),
    (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), FailureKind.INTERNAL, 1),  # not by the text
    (OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), FailureKind.DISK, 1),
    (TrainingError("disk", "not enough free disk for checkpoints"), FailureKind.DISK, 1),
    (KeyError("recipe"), FailureKind.INTERNAL, 1),
])
def test_failed_events_carry_failure_kind_values(monkeypatch, capfd, tmp_path, exc, kind, code):
    got, event = failing_run(monkeypatch, capfd, tmp_path, exc)
    assert got == code and event["event"] == "failed" and event["kind"] == kind.value
    assert event["message"]


def test_a_nan_is_reported_where_it_happens_with_its_reason():
    error = TrainingError("nan", "the loss became nan at step 2")
    assert error.kind is FailureKind.ENGINE and error.reason == "nan"

"""FailureKind at the command line: what reaches the top of a command is classified once
(``desktop_app.errors.failure_kind``) and becomes one readable line and ``kind.exit_code``."""

from __future__ import annotations

import errno
import os

import pytest

from desktop_app import cli
from desktop_app.cli import info
from desktop_app.errors import CancelledError, EngineError, ModelError, OutOfMemory, RequestError


class OutOfMemoryError(RuntimeError):
    """Named as torch's (torch.OutOfMemoryError is a RuntimeError): found by the type, never the text."""


def fail_with(monkeypatch, capsys, exc: BaseException) -> tuple[int, str]:
    def run(args):
        raise exc

    monkeypatch.setattr(info, "run", run)
    code = cli.main(["info", "image.png"])
    return code, capsys.readouterr().err


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.strip()]


def test_an_out_of_memory_by_type_gives_a_readable_line_and_exit_1(monkeypatch, capsys, user_home):
    code, err = fail_with(monkeypatch, capsys, OutOfMemoryError("CUDA error: allocation of 2.00 GiB failed"))
    assert code == 1
    [line] = error_lines(err)
    assert line.startswith("desktop-app: error: out of memory") and "2.00 GiB" in line
    assert "smaller image" in line and "failed:" not in line and "Traceback" not in err
    assert "OutOfMemoryError" in (user_home / "logs" / "errors.log").read_text()  # kept for a bug report


def test_out_of_memory_is_not_found_by_the_message_text(monkeypatch, capsys, user_home):
    code, err = fail_with(monkeypatch, capsys, RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"))
    [line] = error_lines(err)
    assert code == 1 and line.startswith("desktop-app: failed: RuntimeError: CUDA out of memory")
    assert f"(details in {user_home / 'logs' / 'errors.log'})" in line


def test_the_engines_own_out_of_memory_keeps_its_message(monkeypatch, capsys):
    code, err = fail_with(monkeypatch, capsys, OutOfMemory("The CPU ran out of memory even with VAE tiling"))
    assert code == 1 and error_lines(err) == ["desktop-app: error: The CPU ran out of memory even with VAE tiling"]


@pytest.mark.parametrize("number", [errno.ENOSPC, errno.EROFS])
def test_a_refused_write_gives_a_readable_line_naming_the_file_and_exit_1(monkeypatch, capsys, user_home,
                                                                          number):
    exc = OSError(number, os.strerror(number), "/data/out/cat.png")
    code, err = fail_with(monkeypatch, capsys, exc)
    [line] = error_lines(err)
    assert code == 1 and line.startswith("desktop-app: error: could not write /data/out/cat.png: ")
    assert os.strerror(number) in line and "free some disk space" in line and "Traceback" not in err


def test_a_full_disk_found_through_the_cause(monkeypatch, capsys):
    try:
        try:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as inner:
            raise RuntimeError("the encoder stopped") from inner
    except RuntimeError as outer:
        exc = outer
    code, err = fail_with(monkeypatch, capsys, exc)
    [line] = error_lines(err)
    assert code == 1 and line.startswith("desktop-app: error: could not write")
    assert os.strerror(errno.ENOSPC) in line


@pytest.mark.parametrize("exc,code", [
    (RequestError("steps", "must be a whole number from 1 to 150, got 0"), 2),
    (ModelError("Model not found: /nowhere does not exist."), 2),
    (EngineError("the upscaler gave no image"), 1),
])
def test_readable_errors_keep_their_exit_codes(monkeypatch, capsys, user_home, exc, code):
    got, err = fail_with(monkeypatch, capsys, exc)
    assert got == code and error_lines(err) == [f"desktop-app: error: {exc}"]
    assert not (user_home / "logs" / "errors.log").exists()  # a readable stop is no bug: no traceback kept


def test_a_cancel_exits_130(monkeypatch, capsys):
    code, err = fail_with(monkeypatch, capsys, CancelledError("cancelled"))
    assert code == 130 and error_lines(err) == ["desktop-app: cancelled"]


def test_a_bug_keeps_the_failed_line_with_the_log(monkeypatch, capsys, user_home):
    code, err = fail_with(monkeypatch, capsys, KeyError("recipe"))
    [line] = error_lines(err)
    assert code == 1 and line.startswith("desktop-app: failed: KeyError: 'recipe' (details in ")
    assert "KeyError" in (user_home / "logs" / "errors.log").read_text()

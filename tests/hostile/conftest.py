"""Hostile input, run as a user would: the real command line in a subprocess, on a fresh user folder.

``run_cli`` checks the rules every case must keep (README, "Exit codes"): exit 0 or 2 (never 1 for bad input,
never a hang), at most one line on stderr on a failure (no traceback, no library warning), and nothing created
outside the user folder and the places the test names. Each test crafts its own bad input.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

TIMEOUT = 60  # seconds: a hang fails the test instead of stalling the suite (cases take about 2 s)


@dataclass
class CliRun:
    args: list[str]
    code: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def _snapshot(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*")} if folder.exists() else set()


@pytest.fixture
def sandbox(tmp_path):
    """A fresh user folder (``home``) beside a working folder (``work``, the current directory of the run)."""
    home, work = tmp_path / "home", tmp_path / "a" / "b" / "work"  # ../../x from work stays in tmp_path: seen
    home.mkdir()
    work.mkdir(parents=True)
    return home, work


@pytest.fixture
def run_cli(sandbox, tmp_path):
    """``run_cli(*args, allowed=(), codes=(0, 2), env=None, stdin=None)``: the real ``desktop-app`` in a
    subprocess on the sandbox, with the common rules asserted; returns a ``CliRun``. ``allowed`` names
    paths (relative to ``work``) that the run may create outside the user folder."""
    home, work = sandbox

    def run(*args, allowed=(), codes=(0, 2), env=None, timeout=TIMEOUT, one_line=True) -> CliRun:
        before = _snapshot(tmp_path)
        environment = {key: value for key, value in os.environ.items() if not key.startswith("DESKTOP_APP")}
        environment.update({"DESKTOP_APP_HOME": str(home), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                            "QT_QPA_PLATFORM": "offscreen", "PYTHONWARNINGS": "default"})
        environment.update(env or {})
        argv = [sys.executable, "-m", "desktop_app", *[os.fsdecode(a) if isinstance(a, bytes) else str(a)
                                                       for a in args]]
        try:
            done = subprocess.run(argv, cwd=work, env=environment, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"desktop-app {' '.join(map(str, args))[:200]} did not finish in {timeout} s (a hang)")
        result = CliRun(list(args), done.returncode, done.stdout.decode("utf-8", "replace"),
                        done.stderr.decode("utf-8", "replace"))
        assert result.code in codes, f"exit {result.code} (expected {codes}); stderr:\n{result.stderr[-3000:]}"
        if result.code != 0 and one_line:
            assert len(result.lines) == 1, f"expected one line on stderr, got:\n{result.stderr[-3000:]}"
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        created = {path for path in _snapshot(tmp_path) - before
                   if home not in path.parents and path != home}
        permitted = {work / name for name in allowed}
        outside = sorted(str(path) for path in created
                         if not any(path == p or p in path.parents for p in permitted))
        assert not outside, f"created outside the user folder: {outside[:10]}"
        return result

    return run

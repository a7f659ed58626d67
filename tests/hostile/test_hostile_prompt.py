"""A prompt or negative prompt that is not valid text is refused before the model loads (exit 2, one line)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("option", ["prompt", "--negative"])
def test_undecodable_prompt_is_refused_before_any_work(run_cli, sandbox, option):
    home, work = sandbox
    bad = b"a red \xff apple"
    args = [bad, "--out", "x.png"] if option == "prompt" else ["a red apple", "--negative", bad, "--out", "x.png"]
    result = run_cli("generate", *args, "--steps", "1")
    assert result.code == 2
    assert "UTF-8" in result.lines[0] and ("prompt" in result.lines[0])
    assert not (work / "x.png").exists()

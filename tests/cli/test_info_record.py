"""``desktop-app info IMAGE --record``: the creation record printed (and under "record" with --json), for a chain
of decisions saved through the real studio functions (tests/creation_chain.py) into the user folder's history."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from desktop_app import cli
from tests.creation_chain import Studio, make_chain


@pytest.fixture
def chain(tmp_path, monkeypatch):
    studio = Studio(tmp_path / "out", monkeypatch)
    try:
        yield make_chain(studio)
    finally:
        studio.history.close()


def test_info_record_lists_the_decisions_in_order(chain):
    env = dict(os.environ, OMP_NUM_THREADS="1")  # the real entry point, with the user folder of this test
    done = subprocess.run([sys.executable, "-m", "desktop_app", "info", str(chain["four"]), "--record"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    steps = ['generated {}: prompt "a fox", seed 1'.format(chain["try"]),
             'generated {}: prompt changed from "a fox" to "a red fox in snow"; seed 1 → 3'.format(chain["one"]),
             "generated {}: seed 3 → 7; guidance 7 → 9".format(chain["two"]),
             "marked {} as a favourite".format(chain["two"]),
             "start image picked: {} (history #".format(chain["two"]),
             "mask painted (sha ", "generated {}: start image picked".format(chain["three"]),
             "upscaled {} (32x32) to {} (128x128) with tiny-esrgan".format(chain["three"], chain["four"])]
    positions = [out.index(step) for step in steps]
    assert positions == sorted(positions)
    assert "old.png" not in out and "other.png" not in out  # hours earlier; another model
    assert out.index("Creation record of") < positions[0]  # after the recipe and the credentials


def test_info_json_has_the_record_only_when_asked(chain, capsys):
    assert cli.main(["info", str(chain["four"]), "--json", "--record"]) == 0
    found = json.loads(capsys.readouterr().out)
    kinds = [event["kind"] for event in found["record"]["events"]]
    assert kinds == ["attempt", "attempt", "attempt", "favourite", "start_image", "mask", "attempt", "upscale"]
    assert found["record"]["events"][4]["fields"]["path"] == str(chain["two"])
    assert cli.main(["info", str(chain["four"]), "--json"]) == 0
    assert "record" not in json.loads(capsys.readouterr().out)


def test_info_record_of_a_deleted_file_reads_the_history(chain, capsys):
    chain["two"].unlink()
    assert cli.main(["info", str(chain["two"]), "--record"]) == 0
    out = capsys.readouterr().out
    assert "Recipe: none" in out and "seed 3 → 7; guidance 7 → 9" in out


def test_info_record_of_an_unknown_path_is_one_line(chain, tmp_path, capsys):
    assert cli.main(["info", str(tmp_path / "nowhere.png"), "--record"]) == 2
    err = capsys.readouterr().err
    assert "nowhere.png" in err and err.count("\n") == 1 and "Traceback" not in err

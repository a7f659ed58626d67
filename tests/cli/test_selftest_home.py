"""``desktop-app selftest`` opens the real window (settings, history) and runs the engine (caches), all on a
temporary user folder: the user's own is left exactly as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from desktop_app.studio import outputs
from desktop_app.studio.history import History

REPO = Path(__file__).resolve().parents[2]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_selftest_leaves_the_users_folder_untouched(tiny_model_dir, tmp_path):
    # the user's folder where platformdirs puts it on Linux ($XDG_DATA_HOME/desktop-app), with their things
    xdg = tmp_path / "xdg-data"
    user = xdg / "desktop-app"
    user.mkdir(parents=True)
    (user / "settings.json").write_text(json.dumps({"theme": "dark", "runs": 3}))
    history = History(user / "history.sqlite3")
    outputs.keep_image(Image.new("RGB", (8, 8)), {"prompt": "mine"}, 1, user / "outputs", history)
    history.close()
    before = snapshot(user)
    temp = tmp_path / "tmp"
    temp.mkdir()

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), XDG_DATA_HOME=str(xdg),
               TMPDIR=str(temp))
    env.pop("DESKTOP_APP_HOME")  # the real default: the user's folder from platformdirs
    env.pop("QT_QPA_PLATFORM", None)  # the selftest chooses offscreen itself
    proc = subprocess.run([sys.executable, "-m", "desktop_app", "selftest", "--model", str(tiny_model_dir),
                           "--device", "cpu"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    lines = proc.stdout.splitlines()
    assert any(line.startswith("PASS  window:") for line in lines), proc.stdout + proc.stderr
    assert any(line.startswith("PASS  generate:") for line in lines), proc.stdout + proc.stderr

    assert snapshot(user) == before, "settings, history and outputs are byte for byte as they were"
    assert sorted(p.name for p in xdg.iterdir()) == ["desktop-app"]
    assert not [p for p in temp.iterdir() if p.name.startswith("desktop-app-selftest-")], "the temp home goes"

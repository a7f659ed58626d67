"""``desktop-app generate`` as people run it (a subprocess on the tiny model): a history row for every image it
saves, the same rows the window writes, and ``--timeline`` writing the denoising animation."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from desktop_app import paths
from desktop_app.studio import png_recipe
from desktop_app.studio.history import History

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args, timeout=240):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))  # DESKTOP_APP_HOME: the test's
    return subprocess.run([sys.executable, "-m", "desktop_app", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def history_entries():
    history = History(paths.home() / "history.sqlite3")  # where the window opens it
    try:
        return history.entries()
    finally:
        history.close()


def test_generate_records_each_image_in_the_history_and_writes_the_timeline(tiny_model_dir, tmp_path):
    out, animation = tmp_path / "pair.png", tmp_path / "steps.webp"
    proc = run_cli("generate", "a red cat", "--out", out, "--model", tiny_model_dir, "--batch", 2, "--seed", 3,
                   "--device", "cpu", "--timeline", animation, "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    files = [Path(f) for f in report["files"]]

    entries = sorted(history_entries(), key=lambda e: e.seed)
    assert [e.path for e in entries] == files and [e.seed for e in entries] == [3, 4]
    for entry, path in zip(entries, files):
        ours = json.loads(Image.open(path).text["recipe"])
        assert entry.state == "done" and not entry.missing
        ours.pop("format")  # the file's own mark of the recipe format
        assert entry.params == ours, "the row holds the recipe that is in the file, as the window's rows do"
        assert (entry.prompt, entry.model, entry.width, entry.height) == ("a red cat", "tiny-embedded", 32, 32)

    steps = entries[0].params["steps"]
    assert report["timeline"]["file"] == str(animation)
    assert report["timeline"]["kept"] == steps + 1, "a preview after every step, then the final image"
    with Image.open(animation) as image:
        assert image.format == "WEBP" and image.is_animated
        assert image.n_frames == report["timeline"]["frames"] >= 2
        assert image.size == Image.open(files[0]).size, "frames take the final (upscaled) image's size"


def test_timeline_as_gif(tiny_model_dir, tmp_path):
    animation = tmp_path / "steps.gif"
    proc = run_cli("generate", "a boat", "--out", tmp_path / "boat.png", "--model", tiny_model_dir, "--seed", 1,
                   "--device", "cpu", "--no-upscale", "--timeline", animation)
    assert proc.returncode == 0, proc.stderr
    with Image.open(animation) as image:
        assert image.format == "GIF" and image.is_animated
        frames = image.n_frames
    assert f"wrote {animation} ({frames} frames)" in proc.stdout
    assert [e.prompt for e in history_entries()] == ["a boat"]


@pytest.mark.parametrize("name,needle", [("steps.jpg", ".webp or .gif"), ("no-such-folder/steps.gif",
                                                                         "does not exist")])
def test_a_bad_timeline_path_exits_2_and_the_images_are_still_saved(tiny_model_dir, tmp_path, name, needle):
    out = tmp_path / "kept.png"
    proc = run_cli("generate", "a tree", "--out", out, "--model", tiny_model_dir, "--seed", 2, "--device", "cpu",
                   "--timeline", tmp_path / name)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and needle in errors[0] and "images were saved" in errors[0], proc.stderr
    assert png_recipe.read_recipe(out)["request"]["prompt"] == "a tree"
    assert f"wrote {out}" in proc.stdout
    assert [e.path for e in history_entries()] == [out]
    assert not (tmp_path / name).exists()

"""No finished image is lost and no input is destroyed (issue 14, "Images lost", "Input destroyed", "Smaller").

The rule: the output place is checked before the work starts (exit 2, one line naming the path the user gave),
the image is written before anything optional (a history failure is a warning), and an image that cannot be
written where asked goes to a fallback folder that the message names (exit 1: a real failure).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from desktop_app import cli, paths
from desktop_app.cli import studio as cli_studio
from desktop_app.cli import upscale as cli_upscale
from desktop_app.engine.recipe import Recipe
from desktop_app.studio import outputs, png_recipe
from desktop_app.studio.history import History

RECIPE = {"prompt": "a kite", "width": 16, "height": 16, "steps": 3, "guidance_scale": 5.0, "sampler": "Euler",
          "seed": 4, "model": "default", "model_name": "tiny"}


def photo(path: Path) -> Path:
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((12, 16, 3)) * 255).astype(np.uint8), "RGB").save(path)
    return path


# ---- the output place is checked before the work (exit 2, one line naming what the user gave) -----------


@pytest.mark.parametrize("case", ["parent is a file", "proc", "not utf-8", "read-only folder"])
def test_an_unwritable_out_is_refused_before_the_model_loads(run_cli, sandbox, case):
    home, work = sandbox
    if case == "parent is a file":
        (work / "notes.txt").write_text("a file, not a folder")
        out, needle = "notes.txt/cat.png", "notes.txt"
    elif case == "proc":
        if not Path("/proc/self").exists():
            pytest.skip("no /proc here")
        out, needle = "/proc/x.png", "/proc/x.png"
    elif case == "not utf-8":
        out, needle = os.fsdecode(b"\xff.png"), "not valid text"
    else:
        if os.name != "posix" or os.geteuid() == 0:
            pytest.skip("root writes into read-only folders")
        (work / "locked").mkdir()
        (work / "locked").chmod(0o555)
        out, needle = "locked/cat.png", "locked/cat.png"
    started = time.monotonic()
    result = run_cli("generate", "a cat", "--out", out, "--steps", "1", "--seed", "1", "--device", "cpu")
    assert result.code == 2
    assert needle in result.lines[0] and "--out" in result.lines[0], result.lines
    assert ".saving-" not in result.lines[0], "the message names the user's path, not a temporary file"
    assert time.monotonic() - started < 30, "refused before torch and the model load"
    assert not list(work.rglob("*.png"))


def test_upscale_refuses_to_write_over_its_input(run_cli, sandbox):
    home, work = sandbox
    original = photo(work / "a.png")
    before = original.read_bytes()
    os.link(original, work / "hard.png")
    os.symlink(original, work / "soft.png")
    (work / "sub").mkdir()
    for out in ("a.png", "./a.png", "sub/../a.png", str(original), "hard.png", "soft.png"):
        result = run_cli("upscale", "a.png", out, "--device", "cpu")
        assert result.code == 2, out
        assert "input" in result.lines[0] and "replace the original" in result.lines[0], result.lines
    assert original.read_bytes() == before


def test_upscale_refuses_an_unwritable_output_before_the_work(run_cli, sandbox):
    home, work = sandbox
    photo(work / "a.png")
    (work / "plain").write_text("x")
    result = run_cli("upscale", "a.png", "plain/big.png", "--device", "cpu")
    assert result.code == 2 and "plain" in result.lines[0] and "not a folder" in result.lines[0]


def test_same_file_sees_spellings_and_links(tmp_path):
    a = photo(tmp_path / "a.png")
    os.link(a, tmp_path / "b.png")
    assert outputs.same_file(a, tmp_path / "." / "a.png") and outputs.same_file(a, tmp_path / "b.png")
    assert not outputs.same_file(a, tmp_path / "c.png")
    assert outputs.same_file(tmp_path / "new.png", tmp_path / "x" / ".." / "new.png"), "neither exists yet"


# ---- a damaged history costs a warning, never the image -----------------------------------------------


def corrupt_one_page(db: Path) -> None:
    """A history with many rows, then one page in the middle of the table overwritten with garbage."""
    history = History(db)
    for seed in range(300):
        history.begin(Path(f"/nowhere/{seed}.png"), RECIPE | {"prompt": "x" * 400}, seed)
    history._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    history.close()
    size = db.stat().st_size
    page = 4096
    with db.open("r+b") as handle:
        handle.seek((size // page // 2) * page)
        handle.write(os.urandom(page))


def test_generate_with_a_corrupt_history_page_keeps_the_image(run_cli, sandbox, tiny_model_dir):
    home, work = sandbox
    corrupt_one_page(home / "history.sqlite3")
    result = run_cli("generate", "a red kite", "--out", "kite.png", "--model", tiny_model_dir, "--steps", "2",
                     "--seed", "3", "--device", "cpu", "--no-upscale", allowed=["kite.png"], timeout=240)
    assert result.code == 0, result.stderr
    assert png_recipe.read_recipe(work / "kite.png")["request"]["prompt"] == "a red kite"
    warnings = [line for line in result.lines if "warning" in line]
    assert len(warnings) == 1 and "history" in warnings[0] and "broken-" in warnings[0], result.lines
    assert list(home.glob("history.sqlite3.broken-*")), "the damaged database was moved aside"
    history = History(home / "history.sqlite3")
    try:
        assert [e.path for e in history.entries()] == [work / "kite.png"], "stored absolute, in the new history"
    finally:
        history.close()


def test_a_history_that_fails_on_insert_still_saves_the_image(tmp_path, capsys, monkeypatch):
    def locked(*args, **kwargs):
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(History, "begin", locked)
    targets = [tmp_path / "one.png", tmp_path / "two.png"]
    result = SimpleNamespace(images=[Image.new("RGB", (16, 16), "red")] * 2, seeds=[4, 5],
                             recipe=Recipe.from_dict(RECIPE))
    kept = cli_studio.keep_files(result, targets, "desktop-app")
    assert kept.files == [str(t) for t in targets] and all(t.is_file() for t in targets)
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and "warning" in err[0] and "database is locked" in err[0]


# ---- a full disk mid-batch: every written file listed, the rest in a named fallback folder --------------


def test_a_full_disk_mid_batch_keeps_every_image(tiny_model_dir, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    out.mkdir()
    real_write = png_recipe._write
    written = []

    def fills_up(image, handle, info):
        if Path(handle.name).parent == out and len(written) >= 3:
            handle.write(b"\x89PNG partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_write(image, handle, info)
        written.append(handle.name)

    monkeypatch.setattr(png_recipe, "_write", fills_up)
    code = cli.main(["generate", "a blue boat", "--out", str(out / "boat.png"), "--model", str(tiny_model_dir),
                     "--batch", "8", "--steps", "1", "--seed", "10", "--device", "cpu", "--no-upscale"])
    captured = capsys.readouterr()
    assert code == cli.EXIT_FAILED
    listed = [line.split()[1] for line in captured.out.splitlines() if line.startswith("wrote ")]
    assert len(listed) == 8 and all(Path(path).is_file() for path in listed), captured.out
    at_target = sorted(p.name for p in out.iterdir())
    assert at_target == ["boat-1.png", "boat-2.png", "boat-3.png"], "no partial or temporary file left"
    fallback = paths.home() / "unsaved"
    assert sorted(p.name for p in fallback.iterdir()) == [f"boat-{k}.png" for k in range(4, 9)]
    seeds = [png_recipe.read_recipe(fallback / f"boat-{k}.png")["request"]["seed"] for k in range(4, 9)]
    assert seeds == list(range(13, 18)), "each kept image carries its own recipe"
    errors = [line for line in captured.err.splitlines() if "error" in line]
    assert len(errors) == 1 and str(fallback) in errors[0] and "No space left" in errors[0], captured.err
    assert "boat-4.png" in errors[0] and "5 image(s)" in errors[0]


def test_the_fallback_folder_falls_back_to_the_temporary_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(outputs, "unsaved_dirs", lambda: [tmp_path / "file" / "x", tmp_path / "tmp"])
    (tmp_path / "file").write_text("not a folder")
    path = outputs.keep_elsewhere(Image.new("RGB", (8, 8)), RECIPE, 4, "kite.png")
    assert path == tmp_path / "tmp" / "kite.png" and png_recipe.read_recipe(path)["request"]["seed"] == 4
    again = outputs.keep_elsewhere(Image.new("RGB", (8, 8)), RECIPE, 5, "kite.png")
    assert again.name == "kite~1.png", "never over another kept image"


def test_generate_json_lists_fallback_files(tmp_path, monkeypatch, capsys):
    out = tmp_path / "o"
    out.mkdir()
    monkeypatch.setattr(png_recipe, "_write", _fail_in(out, png_recipe._write))
    result = SimpleNamespace(images=[Image.new("RGB", (8, 8))], seeds=[4], recipe=Recipe.from_dict(RECIPE))
    kept = cli_studio.keep_files(result, [out / "a.png"], "desktop-app")
    assert kept.failed == [str(out / "a.png")] and kept.fallback == kept.files
    assert "could not write" in kept.problem() and "unsaved" in kept.problem()
    json.dumps(kept.files)


def _fail_in(folder: Path, real):
    def write(image, handle, info):
        if Path(handle.name).parent == folder:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(image, handle, info)

    return write


# ---- smaller: absolute history paths, the user's umask, what a SIGKILL leaves ---------------------------


def test_a_relative_out_is_stored_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = SimpleNamespace(images=[Image.new("RGB", (8, 8))], seeds=[4], recipe=Recipe.from_dict(RECIPE))
    cli_studio.keep_files(result, [Path("rel.png")], "desktop-app")
    history = History(paths.home() / "history.sqlite3")
    try:
        assert [e.path for e in history.entries()] == [tmp_path.resolve() / "rel.png"]
    finally:
        history.close()


@pytest.mark.skipif(os.name != "posix", reason="POSIX permissions")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        path = png_recipe.save_png(Image.new("RGB", (8, 8)), tmp_path / "a.png", RECIPE)
        big = cli_upscale.save_image(Image.new("RGB", (8, 8)), tmp_path / "b.jpg", {})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    assert big.stat().st_mode & 0o777 == 0o666 & ~umask


def test_the_command_line_recovers_what_a_sigkill_left(tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    history = History(paths.home() / "history.sqlite3")
    stuck = history.begin(out / "half.png", RECIPE, 4)  # killed before the rename: no file
    finished = history.begin(out / "done.png", RECIPE, 5)  # killed after the rename: the file is complete
    png_recipe.save_png(Image.new("RGB", (8, 8)), out / "done.png", RECIPE, 5)
    history._db.execute("UPDATE images SET created = created - 3600 WHERE id IN (?, ?)", (stuck, finished))
    young = history.begin(out / "now.png", RECIPE, 6)  # another process may be saving this one right now
    history.close()
    old_temp, new_temp = out / ".saving-abc.png", out / ".saving-def.png"
    old_temp.write_bytes(b"\x89PNG half")
    new_temp.write_bytes(b"\x89PNG half")
    os.utime(old_temp, (time.time() - 3600, time.time() - 3600))

    opened = cli_studio.open_history("desktop-app", [out])
    try:
        states = dict(opened._db.execute("SELECT id, state FROM images").fetchall())
    finally:
        opened.close()
    assert states == {finished: "done", young: "saving"}, "stuck row dropped, finished row done, young kept"
    assert not old_temp.exists() and new_temp.exists(), "only stale temporary files are removed"
    assert capsys.readouterr().err == ""

"""``generate``'s history rows (cli_studio.keep_files), without torch: the window's rows, one per file."""

from __future__ import annotations

from types import SimpleNamespace

from PIL import Image

from desktop_app.cli import studio as cli_studio
from desktop_app import paths
from desktop_app.engine.recipe import Recipe
from desktop_app.studio.history import History

RECIPE = {"prompt": "a kite", "negative_prompt": "", "width": 16, "height": 16, "steps": 3,
          "guidance_scale": 5.0, "sampler": "Euler", "seed": 4, "model": "default", "model_name": "tiny"}


def result(colour):
    return SimpleNamespace(images=[Image.new("RGB", (16, 16), colour)], seeds=[4], recipe=Recipe.from_dict(RECIPE))


def test_writing_the_same_name_again_keeps_one_row_for_the_file(tmp_path):
    target = tmp_path / "kite.png"
    assert cli_studio.keep_files(result("red"), [target], "desktop-app").files == [str(target)]
    other = cli_studio.keep_files(result("blue"), [tmp_path / "other.png"], "desktop-app").files
    cli_studio.keep_files(result("green"), [target], "desktop-app")
    history = History(paths.home() / "history.sqlite3")
    try:
        entries = history.entries()
        assert sorted(str(e.path) for e in entries) == sorted([str(target), other[0]])
        assert all(e.state == "done" and e.prompt == "a kite" and e.seed == 4 for e in entries)
    finally:
        history.close()
    with Image.open(target) as image:
        assert image.getpixel((0, 0)) == (0, 128, 0)


def test_a_broken_history_costs_a_warning_not_the_image(tmp_path, capsys):
    (paths.home() / "history.sqlite3").write_bytes(b"this is not a database" * 100)
    target = tmp_path / "kite.png"
    assert cli_studio.keep_files(result("red"), [target], "desktop-app").files == [str(target)]
    assert target.is_file()
    err = capsys.readouterr().err
    assert err.startswith("desktop-app: warning: The history database was damaged") and err.count("\n") == 1
    broken = list(paths.home().glob("history.sqlite3.broken-*"))
    assert len(broken) == 1 and broken[0].read_bytes().startswith(b"this is not a database"), "moved aside"
    history = History(paths.home() / "history.sqlite3")  # a new one, holding the image
    try:
        assert [e.path for e in history.entries()] == [target]
    finally:
        history.close()

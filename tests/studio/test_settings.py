"""Settings persist; a broken settings file never stops the app."""

from __future__ import annotations

from desktop_app import paths
from desktop_app.studio import settings


def test_settings_round_trip(user_home):
    data, notice = settings.load()
    assert notice is None and data["theme"] == "system"
    data.update(theme="dark", output_dir="/tmp/pictures", last_request={"prompt": "a cat", "steps": 9})
    settings.save(data)
    again, notice = settings.load()
    assert notice is None
    assert again["theme"] == "dark" and again["output_dir"] == "/tmp/pictures"
    assert again["last_request"] == {"prompt": "a cat", "steps": 9}
    assert not list(paths.home().glob(".settings-*")), "no temporary file left"


def test_a_garbage_settings_file_is_moved_aside(user_home):
    path = paths.settings_path()
    path.write_bytes(b"\x00\xff{{{ not json")
    data, notice = settings.load()
    assert data == settings.defaults()
    assert notice and "default settings" in notice
    assert not path.exists()
    broken = list(path.parent.glob("settings.json.broken-*"))
    assert len(broken) == 1 and broken[0].read_bytes() == b"\x00\xff{{{ not json"
    data2, notice2 = settings.load()
    assert notice2 is None, "told once: the next start is quiet"


def test_a_settings_file_that_is_not_an_object_or_has_a_bad_theme(user_home):
    path = paths.settings_path()
    path.write_text("[1, 2, 3]")
    _, notice = settings.load()
    assert notice
    path.write_text('{"theme": "purple", "unknown": 1}')
    data, notice = settings.load()
    assert notice is None and data["theme"] == "system" and "unknown" not in data

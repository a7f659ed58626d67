"""The per-user folder and the shipped resources folder, both overridable by environment variables."""

from __future__ import annotations

from pathlib import Path

import desktop_app
from desktop_app import paths, resources


def test_user_folders_live_under_desktop_app_home(user_home):
    assert paths.home() == user_home
    for folder, name in ((paths.models_dir(), "models"), (paths.loras_dir(), "loras"),
                         (paths.outputs_dir(), "outputs"), (paths.logs_dir(), "logs")):
        assert folder == user_home / name and folder.is_dir()
    assert paths.settings_path() == user_home / "settings.json"


def test_without_the_override_platformdirs_decides(monkeypatch, tmp_path):
    import platformdirs

    asked = []

    def user_data_dir(name, appauthor=None):
        asked.append(name)
        return str(tmp_path / "platform" / name)

    monkeypatch.delenv("DESKTOP_APP_HOME")
    monkeypatch.setattr(platformdirs, "user_data_dir", user_data_dir)
    assert paths.home() == tmp_path / "platform" / "desktop-app" and asked == ["desktop-app"]
    assert paths.home().is_dir()


def test_resources_are_next_to_the_package_unless_overridden(monkeypatch, tmp_path):
    assert resources.resources_dir() == Path(desktop_app.__file__).resolve().parents[1] / "resources"
    assert resources.default_model_dir().parts[-2:] == ("models", "emoji-mini")
    monkeypatch.setenv("DESKTOP_APP_RESOURCES", str(tmp_path))
    assert resources.default_model_dir() == tmp_path / "models" / "emoji-mini"
    assert paths.default_model_dir() == resources.default_model_dir()  # where the window looks for it


# ---- the one atomic writer ----


def test_write_atomically_replaces_the_file_and_keeps_its_mode(tmp_path):
    import os
    import stat

    target = tmp_path / "image.png"
    target.write_bytes(b"old")
    target.chmod(0o640)
    names = []

    def write(stream):
        names.append(Path(stream.name))  # a temporary file in the same folder, opened by name
        stream.write(b"new bytes")

    assert paths.write_atomically(target, write, prefix=".saving-") == target
    assert target.read_bytes() == b"new bytes"
    assert names[0].parent == tmp_path and names[0].name.startswith(".saving-") and names[0].suffix == ".png"
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o640  # the replaced file's permissions, not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir()] == ["image.png"]


def test_a_new_file_gets_the_umask_default_mode(tmp_path):
    import os
    import stat

    previous = os.umask(0o027)
    try:
        paths.write_atomically(tmp_path / "new.webp", lambda stream: stream.write(b"RIFF"))
        paths.write_text_atomically(tmp_path / "deeper" / "settings.json", "{}")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(tmp_path / "new.webp").st_mode) == 0o640
    assert (tmp_path / "deeper" / "settings.json").read_text(encoding="utf-8") == "{}"
    assert stat.S_IMODE(os.stat(tmp_path / "deeper" / "settings.json").st_mode) == 0o640


def test_a_failing_writer_leaves_the_old_file_whole_and_no_temporary_file(tmp_path):
    import errno

    import pytest

    target = tmp_path / "library.json"
    target.write_text("the old library", encoding="utf-8")

    def fills_the_disk(stream):
        stream.write(b"half of the new libr")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        paths.write_atomically(target, fills_the_disk, prefix=".library-")
    def interrupted(stream):
        stream.write(b"x")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # not only errors: an interrupt mid-write too
        paths.write_atomically(target, interrupted)
    assert target.read_text(encoding="utf-8") == "the old library"
    assert [p.name for p in tmp_path.iterdir()] == ["library.json"]


def test_a_failed_rename_removes_the_temporary_file(tmp_path, monkeypatch):
    import os

    import pytest

    def refused(source, target):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "replace", refused)
    with pytest.raises(PermissionError):
        paths.write_text_atomically(tmp_path / "settings.json", "{}", prefix=".settings-")
    assert list(tmp_path.iterdir()) == []

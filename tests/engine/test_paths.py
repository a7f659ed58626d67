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

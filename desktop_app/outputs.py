"""Where generated images go, and the one function that keeps each of them: file first, then history.

The output folder is the user's Pictures folder (``platformdirs.user_pictures_dir()/desktop-app``) unless
the settings name another; with ``DESKTOP_APP_HOME`` set (tests, portable installs) it is ``outputs`` inside
that folder. No Qt, no torch.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import png_recipe
from .history import History

FOLDER_NAME = "desktop-app"


def default_output_dir() -> Path:
    if os.environ.get("DESKTOP_APP_HOME"):
        from .paths import outputs_dir

        return outputs_dir()
    from platformdirs import user_pictures_dir

    return Path(user_pictures_dir()) / FOLDER_NAME


def output_dir(setting: str | None = None) -> Path:
    """The folder from the settings (``output_dir``), or the default one. Not created here."""
    return Path(setting).expanduser() if setting else default_output_dir()


def unique_path(folder: Path, seed: int | None) -> Path:
    path = Path(folder) / png_recipe.timestamped_name(seed)
    n = 1
    while path.exists():
        path = path.with_name(f"{path.stem.split('~')[0]}~{n}.png")
        n += 1
    return path


def keep_image(image, recipe: dict, seed: int | None, folder: Path, history: History | None) -> Path:
    """Save one generated image into ``folder`` with its recipe and record it. Raises OSError (nothing is
    left behind: no partial file, no history row) when the folder cannot be written or the disk is full."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return keep_image_as(image, recipe, seed, unique_path(folder, seed), history)


def keep_image_as(image, recipe: dict, seed: int | None, path: Path, history: History | None) -> Path:
    """``keep_image`` at a path of the caller's choosing (``desktop-app generate --out``): the same file, the
    same two-phase history row."""
    path = Path(path)
    one = dict(recipe or {})
    if seed is not None:
        one["seed"] = seed
    entry = history.begin(path, one, seed) if history is not None else None
    try:
        path = png_recipe.save_png(image, path, one, seed)
    except BaseException:
        if entry is not None:
            history.abort(entry)
        raise
    if entry is not None:
        history.commit(entry, path)
    return path

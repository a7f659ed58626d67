"""Where generated images go, and the one function that keeps each of them: file first, then history.

The output folder is the user's Pictures folder (``platformdirs.user_pictures_dir()/desktop-app``) unless
the settings name another; with ``DESKTOP_APP_HOME`` set (tests, portable installs) it is ``outputs`` inside
that folder. No Qt, no torch.

The rule that no finished image is lost:
1. the output location is checked before the work starts (``check_output``: a name that is not text, a
   parent that is a file, a folder that cannot be written);
2. the image file is written before anything optional: the history is a warning when it fails, never a
   reason to drop the image (``keep_image_as`` collects history errors instead of raising them);
3. an image that could not be written where asked is written to a fallback folder (``keep_elsewhere``:
   ``<user folder>/unsaved``, else the system's temporary folder) that the message names.

Every image written here carries C2PA content credentials (``save_png``, ``write_signed``: signed as the last step
of the one atomic write, after the recipe chunk; ``credentials.py``); without them the image is still written.
Every one carries the IPTC XMP mark too (digital source type ``trainedAlgorithmicMedia``): an iTXt chunk in a PNG,
Pillow's ``xmp=`` in a JPEG or WebP (``save_signed``, ``xmp_options``), written before the signature covers it.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from desktop_app.studio import credentials, png_recipe
from desktop_app.studio.history import History
from desktop_app.errors import printable
from desktop_app.paths import write_atomically

FOLDER_NAME = "desktop-app"


def default_output_dir() -> Path:
    if os.environ.get("DESKTOP_APP_HOME"):
        from desktop_app.paths import outputs_dir

        return outputs_dir()
    from platformdirs import user_pictures_dir

    return Path(user_pictures_dir()) / FOLDER_NAME


def output_dir(setting: str | None = None) -> Path:
    """The folder from the settings (``output_dir``), or the default one. Not created here."""
    if not setting or not isinstance(setting, str):
        return default_output_dir()
    try:
        return Path(setting).expanduser()
    except RuntimeError:  # "~someone" whose home cannot be found: the name as written
        return Path(setting)


def same_file(a: Path | str, b: Path | str) -> bool:
    """Whether ``a`` and ``b`` name one file: the same name, another spelling, a symlink or a hard link."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return os.path.realpath(os.path.abspath(a)) == os.path.realpath(os.path.abspath(b))


def unique_path(folder: Path, seed: int | None) -> Path:
    path = Path(folder) / png_recipe.timestamped_name(seed)
    n = 1
    while path.exists():
        path = path.with_name(f"{path.stem.split('~')[0]}~{n}.png")
        n += 1
    return path


class OutputProblem(ValueError):
    """The output location cannot be written; the message names the place the user gave."""


UNSAVED_FOLDER = "unsaved"
HISTORY_ERRORS = (sqlite3.Error, OSError, ValueError)  # ValueError: text SQLite cannot store


def check_output(path: Path | str, given: object = None, what: str = "--out") -> Path:
    """Check, before any work, that a file can be written at ``path``: its name is text, its folder is a
    folder (created when missing) and takes a new file. Returns ``path``; raises OutputProblem naming
    ``given`` (what the user typed; ``path`` when None)."""
    shown = f"{what} {printable(path if given is None else given, 120)}"
    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise OutputProblem(f"{shown}: the name is not valid text (undecodable bytes); use a UTF-8 name") \
            from None
    if "\x00" in text:
        raise OutputProblem(f"{shown}: the name contains a NUL character")
    path = Path(text)
    folder = Path(os.path.abspath(path.parent))
    existing = folder
    while not os.path.lexists(existing) and existing.parent != existing:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputProblem(f"{shown}: {printable(existing, 120)} is a file, not a folder")
    if os.path.lexists(path) and path.is_dir():
        raise OutputProblem(f"{shown} is a folder; give a file name")
    if path.exists() and not path.is_file():
        raise OutputProblem(f"{shown} exists and is not a regular file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(prefix=png_recipe.TEMP_PREFIX, suffix=".probe", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputProblem(f"{shown}: cannot write a file in {printable(folder, 120)} ({reason})") from None
    return path


def unsaved_dirs() -> list[Path]:
    """Where images go that could not be written where asked: ``<user folder>/unsaved``, then the
    system's temporary folder (another disk, often)."""
    folders = []
    try:
        from desktop_app.paths import home

        folders.append(home() / UNSAVED_FOLDER)
    except OSError:
        pass
    folders.append(Path(tempfile.gettempdir()) / "desktop-app-unsaved")
    return folders


def keep_elsewhere(image, recipe: dict, seed: int | None, name: str) -> Path:
    """Write an image that could not be written where asked into the first fallback folder that takes it
    (``unsaved_dirs``), under ``name`` (made unique). Raises the last OSError when none does."""
    stem = Path(name).stem or "image"
    error: OSError | None = None
    for folder in unsaved_dirs():
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{stem}.png"
            n = 1
            while path.exists():
                path = folder / f"{stem}~{n}.png"
                n += 1
            one = dict(recipe or {})
            if seed is not None:
                one["seed"] = seed
            return save_png(image, path, one, seed)
        except OSError as exc:
            error = exc
    raise error if error is not None else OSError("no folder to keep the image in")


def keep_image(image, recipe: dict, seed: int | None, folder: Path, history: History | None,
               history_errors: list | None = None) -> Path:
    """Save one generated image into ``folder`` with its recipe and record it. Raises OSError (nothing is
    left behind: no partial file, no history row) when the folder cannot be written or the disk is full.
    A history that fails costs no image: see ``keep_image_as``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return keep_image_as(image, recipe, seed, unique_path(folder, seed), history, history_errors)


def keep_image_as(image, recipe: dict, seed: int | None, path: Path, history: History | None,
                  history_errors: list | None = None) -> Path:
    """``keep_image`` at a path of the caller's choosing (``desktop-app generate --out``): the same file, the
    same two-phase history row. The history is optional: an error from it (a damaged or locked database)
    is appended to ``history_errors`` (ignored when that is None) and the image is still written; OSError
    from writing the image itself propagates."""
    path = Path(path)
    one = dict(recipe or {})
    if seed is not None:
        one["seed"] = seed
    entry = None
    if history is not None:
        try:
            entry = history.begin(path, one, seed)
        except HISTORY_ERRORS as exc:
            _note(history_errors, exc)
    try:
        path = save_png(image, path, one, seed)
    except BaseException:
        if entry is not None:
            try:
                history.abort(entry)
            except HISTORY_ERRORS as exc:  # the row stays "saving"; the next recover drops it
                _note(history_errors, exc)
        raise
    if entry is not None:
        try:
            history.commit(entry, path)
        except HISTORY_ERRORS as exc:  # the file is complete: the next recover finishes the row
            _note(history_errors, exc)
    return path


def save_png(image, path: Path, recipe: dict | None = None, seed: int | None = None) -> Path:
    """``png_recipe.save_png`` with content credentials: the PNG with its recipe chunks is encoded into the
    temporary file (``png_recipe._write``), then signed in place (a ``caBX`` chunk that covers every other byte),
    then renamed into place. Without credentials (``credentials.sign_bytes``) the unsigned PNG is written."""
    path = png_recipe.png_path(path)
    info = png_recipe.png_info(recipe, seed)
    one = dict(recipe or {})
    if seed is not None:
        one["seed"] = seed

    def write(stream) -> None:
        png_recipe._write(image, stream, info)
        credentials.sign_in_place(stream, "image/png", one, path.name)

    return write_atomically(path, write, prefix=png_recipe.TEMP_PREFIX, suffix=".png")


def write_signed(path: Path, write, image_format: str, recipe: dict | None = None) -> Path:
    """Write ``path`` atomically with ``write(stream)`` (an encoder: ``image.save(stream, format="JPEG")``), then
    sign it with content credentials when ``image_format`` is one C2PA covers (PNG, JPEG, WEBP, TIFF)."""
    path = Path(path)
    mime = credentials.MIME_TYPES.get(str(image_format).upper())

    def write_and_sign(stream) -> None:
        write(stream)
        if mime is not None:
            credentials.sign_in_place(stream, mime, recipe, path.name)

    return write_atomically(path, write_and_sign, prefix=png_recipe.TEMP_PREFIX)


XMP_FORMATS = ("JPEG", "WEBP")  # the formats that take the IPTC XMP mark as Pillow's ``xmp=`` (PNG: an iTXt chunk)


def xmp_options(image_format: str, recipe: dict | None = None) -> dict:
    """Pillow save options that put the IPTC XMP mark (``png_recipe.xmp_packet``: digital source type
    ``trainedAlgorithmicMedia``) into a JPEG or WebP, as every PNG carries it; {} for other formats."""
    if str(image_format).upper() not in XMP_FORMATS:
        return {}
    return {"xmp": png_recipe.xmp_packet(recipe).encode("utf-8")}


def save_signed(image, path: Path, image_format: str, recipe: dict | None = None, **options) -> Path:
    """``image`` (PIL) written atomically as ``image_format`` with Pillow's ``options``, the IPTC XMP mark in a
    JPEG or WebP (``xmp_options``), then signed (``write_signed``): the mark is covered by the signature."""
    options = {**xmp_options(image_format, recipe), **options}
    return write_signed(path, lambda stream: image.save(stream, format=image_format, **options), image_format,
                        recipe)


def _note(errors: list | None, exc: BaseException) -> None:
    if errors is not None:
        errors.append(exc)

"""What a model folder declares, read without torch: where it is, its model_index.json, defaults and limits.

The command line reads defaults from here before torch loads; the loader reads the same.
"""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

from desktop_app.resources import DEFAULT_MODEL_NAME, default_model_dir
from desktop_app.errors import ModelError
from desktop_app.resources import DEFAULT_MODEL

EMBEDDED_TEXT_KEY = "_text_encoder_package"
CARD_NAMES = ("MODEL_CARD.md", "README.md")
MAX_CONFIG_BYTES = 16 * 1024 * 1024  # a model_index.json or config.json is a few KB
MAX_JSON_DEPTH = 32  # diffusers configs nest 3 or 4 levels


# ---------------------------------------------------------------------------------------------------------------
# reading user files safely: regular files only, bounded size, bounded nesting


def special_file(path) -> str | None:
    """What a path that is not a regular file is ("a named pipe", "a folder", ...), or None for a regular file
    (a symlink to a regular file is one). Raises OSError when the path cannot be examined."""
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def open_regular(path, what: str = "file"):
    """``path`` opened for binary reading, or a ModelError when it is not a regular file. A named pipe is never
    waited on: the type is checked before the open, and again on the open descriptor (opened non-blocking, so
    that a file swapped for a pipe in between cannot block either)."""
    from desktop_app.errors import printable

    path = Path(path)
    try:
        kind = special_file(path)
        if kind is None:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    kind = "not a regular file"
                else:
                    return os.fdopen(fd, "rb")
            except BaseException:
                os.close(fd)
                raise
            os.close(fd)
    except OSError as exc:
        raise ModelError(f"Cannot read the {what} {printable(path)}: {exc.strerror or exc}.") from None
    raise ModelError(f"The {what} {printable(path)} is {kind}, not a regular file; only regular files are "
                     "read.")


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_EMPTY_PAIR = re.compile(r"\[\]|\{\}")


def nesting_problem(text: str, max_depth: int) -> str | None:
    """Why ``text`` cannot be JSON nested at most ``max_depth`` deep ("nested deeper than N levels",
    "unbalanced brackets"), or None. Linear in the length for a fixed depth, and never recursive: it runs
    before ``json.loads``, whose recursion a deeply nested file would exhaust."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    for _ in range(max_depth):
        if not brackets:
            return None
        shorter = _EMPTY_PAIR.sub("", brackets)
        if shorter == brackets:
            break
        brackets = shorter
    if not brackets:
        return None
    opened = brackets.count("[") + brackets.count("{")
    if opened != brackets.count("]") + brackets.count("}"):
        return "unbalanced brackets"
    return f"nested deeper than {max_depth} levels"


def _no_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def parse_json(text: str, max_depth: int = MAX_JSON_DEPTH):
    """The JSON value of ``text``, or a ValueError saying why not: not JSON, nested deeper than ``max_depth``,
    a key given twice, or NaN/Infinity (which JSON does not have). Never a RecursionError."""
    problem = nesting_problem(text, max_depth)
    if problem is not None:
        raise ValueError(problem)

    def pairs(items):
        result = {}
        for key, value in items:
            if key in result:
                raise ValueError(f"the key {key[:80]!r} appears twice")
            result[key] = value
        return result

    try:
        return json.loads(text, object_pairs_hook=pairs, parse_constant=_no_constant)
    except RecursionError:  # the check above makes this unreachable; kept as a backstop
        raise ValueError(f"nested deeper than {max_depth} levels") from None


def read_json_file(path, what: str = "file", max_bytes: int = MAX_CONFIG_BYTES,
                   max_depth: int = MAX_JSON_DEPTH):
    """The JSON value of a small file, or a ModelError naming the file and the problem (not a regular file,
    too large, not UTF-8, not JSON, too deeply nested)."""
    from desktop_app.errors import printable

    with open_regular(path, what) as handle:
        try:
            data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise ModelError(f"Cannot read {printable(path)}: {exc.strerror or exc}.") from None
    if len(data) > max_bytes:
        raise ModelError(f"{printable(path)} is damaged: more than {max_bytes:,} bytes, far more than a "
                         f"{what} holds.")
    try:
        return parse_json(data.decode("utf-8"), max_depth)
    except UnicodeDecodeError:
        raise ModelError(f"{printable(path)} is damaged (not UTF-8 text).") from None
    except ValueError as exc:
        raise ModelError(f"{printable(path)} is damaged (not valid JSON: {printable(exc, 160)}).") from None


def resolve(name_or_path: str) -> Path:
    """The folder for "default" (the embedded model) or a path the user gave; not checked here."""
    if name_or_path == DEFAULT_MODEL:
        return default_model_dir()
    return Path(name_or_path).expanduser()


def display_name(name_or_path: str) -> str:
    if name_or_path == DEFAULT_MODEL:
        return DEFAULT_MODEL_NAME
    return Path(name_or_path).expanduser().resolve().name or str(name_or_path)


def check_folder(name_or_path: str) -> Path:
    """The model folder, or a ModelError that names what is missing."""
    folder = resolve(name_or_path)
    if name_or_path == DEFAULT_MODEL and not (folder / "model_index.json").is_file():
        raise ModelError(f"The embedded default model is missing: no model_index.json in {folder}. "
                         "Reinstall the app, or pass --model with a diffusers model folder.")
    if not folder.exists():
        raise ModelError(f"Model not found: {folder} does not exist.")
    if folder.is_file():  # a single-file checkpoint: engine/single_file.py inspects and loads it
        return folder
    if not folder.is_dir():
        raise ModelError(f"Model {folder} is neither a folder nor a file.")
    if not (folder / "model_index.json").is_file():
        raise ModelError(f"{folder} is not a diffusers model folder: it has no model_index.json.")
    return folder


def read_index(folder: Path) -> dict:
    if Path(folder).is_file():  # a single-file checkpoint has no model_index.json: it declares nothing itself
        return {}
    path = Path(folder) / "model_index.json"
    index = read_json_file(path, "model_index.json")
    if not isinstance(index, dict):
        from desktop_app.errors import printable

        raise ModelError(f"{printable(path)} is damaged (expected a JSON object).")
    return index


def is_embedded(index: dict) -> bool:
    """The embedded format: a StableDiffusionPipeline whose text encoder comes from a Python package."""
    return bool(index.get(EMBEDDED_TEXT_KEY))


def defaults(index: dict) -> dict:
    """Generation defaults the folder declares ("_defaults": width, height, steps, guidance_scale, sampler,
    upscale), or {}."""
    value = index.get("_defaults")
    return dict(value) if isinstance(value, dict) else {}


def limits(index: dict) -> dict:
    """Size limits the folder declares ("_limits": min_size, max_size), or {}."""
    value = index.get("_limits")
    return dict(value) if isinstance(value, dict) else {}


def card_path(folder: Path) -> Path | None:
    for name in CARD_NAMES:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def upscaler_path(folder: Path) -> Path | None:
    path = Path(folder) / "upscaler" / "model.safetensors"
    return path if path.is_file() else None

"""The one check for a name the user (or a hub listing, or a file) gives that becomes part of a path or is printed.

Every name that becomes a file or folder inside the user folder (training job names, LoRA names, library names,
download names, files a hub lists) goes through ``check_name`` (one path part) or ``check_relative`` (a relative
path of several parts, e.g. a file a hub repository lists) *before* any file system call, so that no folder is
ever created outside the place it belongs. ``printable`` makes a string from a file or the user safe to print on
one terminal line. Plain Python: no Qt, no torch.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path, PurePosixPath

from desktop_app.errors import printable  # noqa: F401 - one place; used here and re-exported

MAX_NAME = 120
_WINDOWS_RESERVED = {"con", "prn", "aux", "nul", *(f"com{n}" for n in range(1, 10)),
                     *(f"lpt{n}" for n in range(1, 10))}


class UnsafeName(ValueError):
    """A name that cannot be used as (part of) a path; the message names the problem."""


def _bad_character(text: str) -> str | None:
    for char in text:
        if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"):
            return repr(char)[1:-1]
    return None


def check_name(name: object, what: str = "name", hidden_ok: bool = False) -> str:
    """``name`` as one safe path part, or ``UnsafeName`` naming the problem. Refused: empty, longer than
    120 characters, '.' or '..', a slash or backslash, a drive or ':' , a leading '.', '~' or '-',
    control and invisible characters (newlines, terminal escapes), names Windows reserves."""
    if not isinstance(name, str):
        raise UnsafeName(f"{what} must be text, not {type(name).__name__}")
    shown = printable(name, 60)
    if not name.strip():
        raise UnsafeName(f"{what} cannot be empty")
    if name != name.strip():
        raise UnsafeName(f"{what} {shown}: remove the spaces at its start or end")
    if len(name) > MAX_NAME:
        raise UnsafeName(f"{what} is {len(name)} characters long; use at most {MAX_NAME}")
    bad = _bad_character(name)
    if bad is not None:
        raise UnsafeName(f"{what} {shown} contains the control character {bad}; use letters, digits, "
                         "spaces, '-' and '_'")
    if any(char in name for char in "/\\:"):
        raise UnsafeName(f"{what} {shown} cannot contain '/', '\\' or ':' (it names one file or folder, "
                         "not a path)")
    if name in (".", "..") or name[0] in ("~-" if hidden_ok else ".~-"):
        raise UnsafeName(f"{what} {shown} cannot start with '.', '~' or '-'")
    if name.split(".")[0].lower() in _WINDOWS_RESERVED:
        raise UnsafeName(f"{what} {shown} is a name Windows reserves for a device; choose another")
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafeName(f"{what} {shown} is not valid text (undecodable bytes)") from None
    return name


def check_relative(path: object, what: str = "path") -> PurePosixPath:
    """A relative path (forward slashes, as hubs list files) whose every part passes ``check_name``."""
    if not isinstance(path, str):
        raise UnsafeName(f"{what} must be text, not {type(path).__name__}")
    if path.startswith(("/", "\\")) or "\\" in path or (len(path) > 1 and path[1] == ":"):
        raise UnsafeName(f"{what} {printable(path, 60)} must be a relative path inside its folder")
    parts = path.split("/")
    for part in parts:
        check_name(part, what, hidden_ok=True)  # hubs list files such as .gitattributes
    return PurePosixPath(*parts)


def inside(folder: Path, name: str, what: str = "name") -> Path:
    """``folder / name`` after checking ``name``; the result is guaranteed to stay inside ``folder``."""
    relative = check_relative(name, what) if "/" in name else PurePosixPath(check_name(name, what))
    target = Path(folder) / Path(*relative.parts)
    base = Path(folder).resolve()
    resolved = target.resolve()
    if resolved != base and base not in resolved.parents:  # a symlink inside the folder that leads out
        raise UnsafeName(f"{what} {printable(name, 60)} leads outside {folder}")
    return target

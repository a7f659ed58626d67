"""The work folder (``<user folder>/work``, paths.work_dir) kept small: at the window's start, the files there
older than ``MAX_AGE_DAYS`` that no history entry's recipe names are removed.

The window writes into the work folder what a request needs as a file: a copy of the canvas used as the start
image (``canvas-<hash>.png``), a painted mask (``mask-<hash>.png``). A recipe names them (``init_image``,
``mask``, an edit's ``image``, any other field), so a kept image can be made again; those stay as long as the
history holds the entry. The rest would pile up forever. A file is matched by its name anywhere in a recipe's
text (the names carry their content's hash), so no field and no spelling of its folder is missed. Cheap: the
history is read only when an old file is found; and harmless: it never raises (a problem is logged), and without
the real history (one in memory, when the file could not be opened) nothing is removed.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from pathlib import Path

log = logging.getLogger(__name__)

MAX_AGE_DAYS = 7


def clean(history, folder: Path | None = None, max_age_days: float = MAX_AGE_DAYS) -> int:
    """Remove the regular files of ``folder`` (default: the work folder) last written more than ``max_age_days``
    ago that no recipe in ``history`` (a studio History) names; how many were removed. Never raises."""
    try:
        return _clean(history, folder, max_age_days)
    except Exception:  # noqa: BLE001 - a tidy-up must never stop the window from starting
        log.warning("The work folder could not be cleaned", exc_info=True)
        return 0


def _clean(history, folder: Path | None, max_age_days: float) -> int:
    from desktop_app.studio.history import MEMORY

    if str(getattr(history, "path", MEMORY)) == MEMORY:
        return 0  # not the real history: which files its recipes name is not known
    if folder is None:
        from desktop_app.paths import work_dir

        folder = work_dir()
    old = _old_files(Path(folder), time.time() - max_age_days * 86400)
    if not old:
        return 0
    # each name as it is, and as the history's JSON writes it (non-ASCII as \u escapes, quotes escaped)
    forms = {form: name for name in old for form in (name, json.dumps(name)[1:-1])}
    named = re.compile("|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)))
    for text in history.recipe_texts():
        for found in named.findall(text):
            old.pop(forms[found], None)
        if not old:
            return 0
    removed = 0
    for name, path in old.items():
        try:
            path.unlink()
            removed += 1
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("Could not remove %s from the work folder: %s", name, exc.strerror or exc)
    if removed:
        log.info("Removed %d old file(s) no history entry names from %s", removed, folder)
    return removed


def _old_files(folder: Path, cutoff: float) -> dict[str, Path]:
    """{name: path} of the regular files (not links, not folders) in ``folder`` last written before ``cutoff``."""
    old = {}
    try:
        entries = list(os.scandir(folder))
    except FileNotFoundError:
        return {}
    for entry in entries:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_mtime < cutoff:
            old[entry.name] = Path(entry.path)
    return old

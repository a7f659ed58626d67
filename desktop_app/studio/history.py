"""The history of every generated image, in SQLite (WAL mode) in the user folder. No Qt, no torch.

One row per image file. Saving is two-phase so that a crash at any moment leaves the history consistent:

1. ``begin`` inserts the row with state "saving" (and the final file name) before the file is written;
2. the PNG is written to a temporary file and renamed into place (``png_recipe.save_png``);
3. ``commit`` flips the row to "done".

``recover`` (run at every start, of the window and of ``desktop-app generate``) finishes what a crash
interrupted: a "saving" row whose file is in place and readable was finished (the crash came between the
rename and the commit) and becomes "done"; otherwise the row is dropped and the temporary files are removed.
With ``min_age`` it leaves alone what another running process may still be writing. A "done" row whose file
has gone (the user moved or deleted it) stays in the history and shows as missing: that is the user's doing.

The history is optional: the image file is what counts. ``open_checked`` moves a damaged database aside as
``history.sqlite3.broken-<time>`` and starts a new one, with a notice for the user. Paths are stored
absolute and resolved, so that a row made from any working folder finds its file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from desktop_app.studio.png_recipe import TEMP_PREFIX

SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    created REAL NOT NULL,
    path TEXT NOT NULL,
    prompt TEXT NOT NULL DEFAULT '',
    negative_prompt TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    seed INTEGER,
    width INTEGER,
    height INTEGER,
    params TEXT NOT NULL DEFAULT '{}',
    favourite INTEGER NOT NULL DEFAULT 0,
    state TEXT NOT NULL DEFAULT 'saving' CHECK (state IN ('saving', 'done'))
);
CREATE INDEX IF NOT EXISTS images_created ON images (created);
"""


@dataclass(frozen=True)
class Entry:
    id: int
    created: float
    path: Path
    prompt: str
    negative_prompt: str
    model: str
    seed: int | None
    width: int | None
    height: int | None
    params: dict
    favourite: bool
    state: str

    @property
    def missing(self) -> bool:
        try:
            return not self.path.is_file()
        except (OSError, ValueError):  # a path SQLite holds but the system cannot use (a NUL in it)
            return True


def default_db_path() -> Path:
    from desktop_app.paths import home

    return home() / "history.sqlite3"


MEMORY = ":memory:"
_SQLITE_CORRUPT, _SQLITE_NOTADB = 11, 26


class DamagedHistory(sqlite3.DatabaseError):
    """The database file is damaged (not a database, or a corrupt page)."""


def is_damaged(exc: BaseException) -> bool:
    """True when ``exc`` says the database file itself is damaged (not when it is merely locked or
    read-only: those pass)."""
    if isinstance(exc, DamagedHistory):
        return True
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def stored_path(path: Path | str) -> str:
    """How a path is kept in the history: absolute and resolved (a relative ``--out`` would otherwise point
    somewhere else when the gallery opens it)."""
    return os.path.realpath(os.path.abspath(os.fspath(path)))


class History:
    """Use from one thread (the UI thread in the window)."""

    def __init__(self, path: Path | str | None = None):
        self.path = Path(path) if path is not None else default_db_path()
        if str(path) != MEMORY:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), timeout=10, isolation_level=None)  # autocommit
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a committed row survives a power cut too
            self._db.executescript(SCHEMA)
        except BaseException:
            self._db.close()
            raise

    @classmethod
    def open_checked(cls, path: Path | None = None, thorough: bool = True) -> tuple[History, str | None]:
        """(history, notice). A damaged database (random bytes, a corrupt page: ``PRAGMA quick_check`` when
        ``thorough``) is moved aside as ``<name>.broken-<time>`` and a new one is started; the notice says
        so. Other errors (a locked database, a read-only folder) propagate: the caller goes on without."""
        path = Path(path) if path is not None else default_db_path()
        try:
            history = cls(path)
        except sqlite3.Error as exc:
            if not is_damaged(exc):
                raise
            reason = str(exc)
        else:
            try:
                if thorough:
                    history.check()
                return history, None
            except sqlite3.Error as exc:
                history.close()
                if not is_damaged(exc):
                    raise
                reason = str(exc)
        aside = move_aside(path)
        return cls(path), damaged_notice(reason, aside)

    def check(self) -> None:
        """Raise DamagedHistory when SQLite's own consistency check finds damage (reads every page once)."""
        rows = self._db.execute("PRAGMA quick_check").fetchall()
        if [tuple(row) for row in rows] != [("ok",)]:
            raise DamagedHistory(f"database disk image is malformed: {str(rows[0][0])[:120]}")

    def close(self) -> None:
        self._db.close()

    # ---- the two-phase save ------------------------------------------------------------------------------

    def begin(self, path: Path, recipe: dict, seed: int | None = None) -> int:
        recipe = dict(recipe or {})
        cursor = self._db.execute(
            "INSERT INTO images (created, path, prompt, negative_prompt, model, seed, width, height, params,"
            " state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'saving')",
            (time.time(), stored_path(path), str(recipe.get("prompt", "")),
             str(recipe.get("negative_prompt", "")), str(recipe.get("model_name") or recipe.get("model", "")),
             seed if seed is not None else recipe.get("seed"), recipe.get("width"), recipe.get("height"),
             json.dumps(recipe, sort_keys=True, default=str)))
        return int(cursor.lastrowid)

    def commit(self, entry_id: int, path: Path | None = None) -> None:
        if path is not None:
            self._db.execute("UPDATE images SET state='done', path=? WHERE id=?", (stored_path(path), entry_id))
        else:
            self._db.execute("UPDATE images SET state='done' WHERE id=?", (entry_id,))

    def abort(self, entry_id: int) -> None:
        self._db.execute("DELETE FROM images WHERE id=?", (entry_id,))

    def recover(self, folders: list[Path] = (), min_age: float = 0.0) -> dict:
        """Finish or undo saves a crash interrupted; remove temporary files. Returns counts.

        ``min_age`` (seconds): leave rows and temporary files younger than that alone, since another
        process (the window, a second ``generate``) may be saving them right now. A finished file always
        finishes its row."""
        kept = dropped = 0
        seen_folders = {Path(folder) for folder in folders}
        cutoff = time.time() - min_age
        rows = self._db.execute("SELECT id, path, created FROM images WHERE state='saving'").fetchall()
        for entry_id, path, created in rows:
            path = Path(path)
            seen_folders.add(path.parent)
            if _complete_png(path):
                self.commit(entry_id)
                kept += 1
            elif created is None or created <= cutoff:
                self.abort(entry_id)
                dropped += 1
        temps = sum(remove_stale_temps(folder, min_age) for folder in seen_folders)
        return {"finished": kept, "dropped": dropped, "temp_files_removed": temps}

    # ---- the gallery -------------------------------------------------------------------------------------

    def entries(self, search: str = "", favourites_only: bool = False, limit: int = 500) -> list[Entry]:
        """Finished images, newest first; ``search`` matches words of the prompt (all of them)."""
        sql = "SELECT * FROM images WHERE state='done'"
        args: list = []
        for word in search.split():
            sql += " AND prompt LIKE ? ESCAPE '\\'"
            args.append("%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%")
        if favourites_only:
            sql += " AND favourite=1"
        sql += " ORDER BY created DESC, id DESC LIMIT ?"
        args.append(int(limit))
        return [self._entry(row) for row in self._db.execute(sql, args).fetchall()]

    def get(self, entry_id: int) -> Entry | None:
        row = self._db.execute("SELECT * FROM images WHERE id=?", (entry_id,)).fetchone()
        return self._entry(row) if row else None

    def set_favourite(self, entry_id: int, favourite: bool) -> None:
        self._db.execute("UPDATE images SET favourite=? WHERE id=?", (1 if favourite else 0, entry_id))

    def delete(self, entry_id: int) -> None:
        self._db.execute("DELETE FROM images WHERE id=?", (entry_id,))

    def drop_replaced(self, path: Path) -> int:
        """Rows of ``path`` older than its newest one: the file was overwritten (``generate --out`` to the
        same name), so their image is gone. Returns how many were dropped."""
        cursor = self._db.execute(
            "DELETE FROM images WHERE path=? AND id < (SELECT MAX(id) FROM images WHERE path=?)",
            (stored_path(path), stored_path(path)))
        return cursor.rowcount

    def recipe_texts(self):
        """The recipe of every row (saved, or being saved), as the JSON text kept: for a scan that must not
        miss one (studio/work_cleanup.py looks for the files they name)."""
        for (params,) in self._db.execute("SELECT params FROM images"):
            yield str(params)

    def count(self, state: str | None = None) -> int:
        if state is None:
            return int(self._db.execute("SELECT COUNT(*) FROM images").fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM images WHERE state=?", (state,)).fetchone()[0])

    def _entry(self, row) -> Entry:
        (entry_id, created, path, prompt, negative, model, seed, width, height, params, favourite,
         state) = row
        try:
            recipe = json.loads(params)
        except ValueError:
            recipe = {}
        return Entry(entry_id, created, Path(path), prompt, negative, model, seed, width, height, recipe,
                     bool(favourite), state)


def remove_stale_temps(folder: Path, min_age: float = 0.0) -> int:
    """Remove ``.saving-*`` files in ``folder`` (what a killed save leaves) older than ``min_age`` seconds;
    how many were removed. Never fails: a folder that cannot be listed is skipped."""
    removed = 0
    cutoff = time.time() - min_age
    try:
        leftovers = list(Path(folder).glob(f"{TEMP_PREFIX}*"))
    except OSError:
        return 0
    for temp in leftovers:
        try:
            if min_age and temp.lstat().st_mtime > cutoff:
                continue
            if temp.is_file() and not temp.is_symlink():
                temp.unlink()
                removed += 1
        except OSError:
            pass
    return removed


def move_aside(path: Path) -> Path:
    """Rename a damaged database (and its -wal and -shm files) to ``<name>.broken-<time>``; the new name.
    OSError when it cannot be moved (the caller then runs without a history)."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    aside = path.with_name(f"{path.name}.broken-{stamp}")
    n = 1
    while aside.exists():
        aside = path.with_name(f"{path.name}.broken-{stamp}-{n}")
        n += 1
    os.replace(path, aside)
    for extra in ("-wal", "-shm"):
        side = path.with_name(path.name + extra)
        try:
            os.replace(side, aside.with_name(aside.name + extra))
        except FileNotFoundError:
            pass
        except OSError:
            side.unlink(missing_ok=True)  # a journal left beside a new database would be applied to it
    return aside


def damaged_notice(reason: str, aside: Path) -> str:
    return (f"The history database was damaged ({' '.join(str(reason).split())[:160]}); it was moved to "
            f"{aside} and a new history was started. Your image files are untouched.")


def _complete_png(path: Path) -> bool:
    """The file is in place and decodes: the rename only ever publishes complete files, but check anyway."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            image.load()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not a finished image"
        return False

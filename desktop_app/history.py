"""The history of every generated image, in SQLite (WAL mode) in the user folder. No Qt, no torch.

One row per image file. Saving is two-phase so that a crash at any moment leaves the history consistent:

1. ``begin`` inserts the row with state "saving" (and the final file name) before the file is written;
2. the PNG is written to a temporary file and renamed into place (``png_recipe.save_png``);
3. ``commit`` flips the row to "done".

``recover`` (run at every start) finishes what a crash interrupted: a "saving" row whose file is in place
and readable was finished (the crash came between the rename and the commit) and becomes "done"; otherwise
the row is dropped and the temporary files are removed. A "done" row whose file has gone (the user moved or
deleted it) stays in the history and shows as missing: that is the user's doing, not a half-written image.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from .png_recipe import TEMP_PREFIX

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
        return not self.path.is_file()


def default_db_path() -> Path:
    from .paths import home

    return home() / "history.sqlite3"


class History:
    """Use from one thread (the UI thread in the window)."""

    def __init__(self, path: Path | None = None):
        self.path = Path(path) if path is not None else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=10, isolation_level=None)  # autocommit
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # a committed row survives a power cut too
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    # ---- the two-phase save ------------------------------------------------------------------------------

    def begin(self, path: Path, recipe: dict, seed: int | None = None) -> int:
        recipe = dict(recipe or {})
        cursor = self._db.execute(
            "INSERT INTO images (created, path, prompt, negative_prompt, model, seed, width, height, params,"
            " state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'saving')",
            (time.time(), str(Path(path)), str(recipe.get("prompt", "")),
             str(recipe.get("negative_prompt", "")), str(recipe.get("model_name") or recipe.get("model", "")),
             seed if seed is not None else recipe.get("seed"), recipe.get("width"), recipe.get("height"),
             json.dumps(recipe, sort_keys=True, default=str)))
        return int(cursor.lastrowid)

    def commit(self, entry_id: int, path: Path | None = None) -> None:
        if path is not None:
            self._db.execute("UPDATE images SET state='done', path=? WHERE id=?", (str(path), entry_id))
        else:
            self._db.execute("UPDATE images SET state='done' WHERE id=?", (entry_id,))

    def abort(self, entry_id: int) -> None:
        self._db.execute("DELETE FROM images WHERE id=?", (entry_id,))

    def recover(self, folders: list[Path] = ()) -> dict:
        """Finish or undo saves a crash interrupted; remove temporary files. Returns counts."""
        kept = dropped = temps = 0
        seen_folders = {Path(folder) for folder in folders}
        for entry_id, path in self._db.execute("SELECT id, path FROM images WHERE state='saving'").fetchall():
            path = Path(path)
            seen_folders.add(path.parent)
            if _complete_png(path):
                self.commit(entry_id)
                kept += 1
            else:
                self.abort(entry_id)
                dropped += 1
        for folder in seen_folders:
            try:
                leftovers = list(folder.glob(f"{TEMP_PREFIX}*"))
            except OSError:
                continue
            for temp in leftovers:
                try:
                    temp.unlink()
                    temps += 1
                except OSError:
                    pass
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
            (str(Path(path)), str(Path(path))))
        return cursor.rowcount

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


def _complete_png(path: Path) -> bool:
    """The file is in place and decodes: the rename only ever publishes complete files, but check anyway."""
    try:
        from PIL import Image

        with Image.open(path) as image:
            image.load()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not a finished image"
        return False

"""The creation record of an image (issue 18): the chain of human decisions that led to it, read back from the
history and the files' own recipes. What copyright offices ask about: how the tool was used. No Qt, no torch.

Starting from one image (a path, or its history entry), the record walks back:

1. its own recipe: the history's row for the file (matched by its path, else by the sha256 of its bytes: a copy),
   else the recipe chunk in the file itself (an upscale's output is not in the history);
2. the start image it came from (``init_image``): matched in the history by the recorded path when that file still
   has the recorded sha256 (``init_image_sha256``), else by the sha256 of the history's files (computed from the
   files now: the history does not keep a hash of each saved file), and that image's own record, recursively, with
   a guard against cycles and a depth limit; an upscale (``job: upscale``) walks back to its ``input``;
3. the session of attempts before each image it reaches. **The session rule**: an attempt's previous attempt is the
   latest earlier history image of the same model made at most ``SESSION_GAP`` seconds (30 minutes) before it;
   following that link back from an image gives its session (at most ``MAX_SESSION`` attempts). Each attempt is
   told as what changed from the previous one ("seed 3 -> 7", "guidance 7 -> 9", "start image picked: X", "mask
   painted (sha ...)"); the first of a session is told in full.

Events are listed in the order they happened: by the history's time of each image; an image outside the history
(an upscale's output) by its file's modification time; a favourite mark, which the history keeps without a time,
right after its image. ``build_record`` returns a ``CreationRecord``: plain data (``to_dict``, ``to_json``) and
text (``to_text``, ``to_markdown``); ``for_export`` is what the window's Export passes to the explain report.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from desktop_app.errors import RequestError, printable
from desktop_app.studio.attempt_changes import changes as _changes
from desktop_app.studio.attempt_changes import image_key as _image_key
from desktop_app.studio.attempt_changes import request_fields as _request
from desktop_app.studio.attempt_changes import settings as _settings
from desktop_app.studio.history import Entry, History, default_db_path, stored_path

SESSION_GAP = 30 * 60  # seconds between two attempts of one session, at most
MAX_SESSION = 50  # attempts shown before one image, at most
MAX_DEPTH = 20  # start images followed back, at most
MAX_HASHED = 2000  # history files hashed to find a start image by its content, at most
SESSION_RULE = (f"An attempt's previous attempt is the latest earlier image in the history made with the same "
                f"model at most {SESSION_GAP // 60} minutes before it; each attempt is told as what changed "
                f"from its previous one.")



@dataclass(frozen=True)
class Event:
    time: float | None  # seconds since the epoch; None: not recorded
    kind: str  # attempt, start_image, mask, outpaint, upscale, edit, favourite, cycle, limit, unknown
    description: str
    image: str | None = None  # the file this event is about
    entry_id: int | None = None  # its history row
    fields: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"time": self.time, "when": when(self.time), "kind": self.kind, "description": self.description,
                "image": self.image, "entry_id": self.entry_id, "fields": self.fields}


@dataclass(frozen=True)
class CreationRecord:
    image: str
    events: list[Event]
    notes: list[str] = field(default_factory=list)
    rule: str = SESSION_RULE

    def to_dict(self) -> dict:
        return {"image": self.image, "session_rule": self.rule, "notes": list(self.notes),
                "events": [event.to_dict() for event in self.events]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, ensure_ascii=False, default=str)

    def lines(self) -> list[str]:
        """One line per event: its time and what was done."""
        return [f"{when(event.time) or 'time not recorded'}  {event.description}" for event in self.events]

    def to_text(self) -> str:
        head = [f"Creation record of {self.image}", f"Session rule: {self.rule}"]
        return "\n".join(head + [f"Note: {note}" for note in self.notes] + [f"  {line}" for line in self.lines()])

    def to_markdown(self) -> str:
        rows = [f"| {when(event.time) or 'not recorded'} | {event.kind} | {_md(event.description)} |"
                for event in self.events]
        notes = [f"- {_md(note)}" for note in self.notes]
        return "\n".join([f"# How this image was made: {_md(self.image)}", "", f"*{self.rule}*", "", *notes,
                          *([""] if notes else []), "| When | What | Decision |", "| --- | --- | --- |", *rows,
                          ""])


def when(time: float | None) -> str | None:
    return datetime.fromtimestamp(time).isoformat(sep=" ", timespec="seconds") if time is not None else None


def build_record(image: Path | str | Entry, history: History | None = None) -> CreationRecord:
    """The creation record of ``image`` (a file, or a history entry). ``history`` None: the user folder's history
    when there is one (opened read-only in spirit: nothing is written). RequestError when the file is missing and
    the history has no row for it."""
    notes: list[str] = []
    own = None
    if history is None:
        own, note = _open_history()
        history = own
        if note:
            notes.append(note)
    try:
        entries = history.entries(limit=10**9) if history is not None else []
    except sqlite3.Error as exc:
        entries = []
        notes.append(f"the history could not be read ({exc}); only the files' own recipes were used")
    finally:
        if own is not None:
            own.close()
    walker = _Walker(entries)
    if isinstance(image, Entry):
        start = walker.node(image.path, entry=image)
    else:
        path = Path(image).expanduser()
        start = walker.node(path)
        if start.entry is None and not _is_file(path):
            raise RequestError("image", f"{printable(path, 200)} is not a file and the history has no image "
                                        "there")
    walker.walk(start, depth=0, used_at=None)
    if walker.hashed:
        notes.append(f"{walker.hashed} history file(s) were hashed (sha256) to match images by their "
                     "content: the history does not keep each saved file's hash")
    return CreationRecord(str(start.path), walker.ordered(), notes + walker.notes)


def for_export(image: Path | str, history: History | None = None) -> dict:
    """The record as the explain report takes it (``write_report(data, folder, record=...)``): what the window's
    Export calls with the image on its canvas."""
    return build_record(image, history).to_dict()


# ---- the walk -------------------------------------------------------------------------------------------------


@dataclass
class _Node:
    path: Path
    entry: Entry | None
    recipe: dict
    time: float | None
    found_by: str  # "path", "sha256", "file" (its own recipe chunk), "none"


class _Walker:
    def __init__(self, entries: list[Entry]):
        self.entries = sorted(entries, key=lambda e: (e.created, e.id))
        self.by_path: dict[str, Entry] = {}
        for entry in self.entries:  # the newest row of a path wins
            self.by_path[str(entry.path)] = entry
        self.previous = _previous_attempts(self.entries)
        self._sha: dict[int, str | None] = {}
        self.hashed = 0
        self.events: list[tuple[float, int, Event]] = []
        self.told: set = set()
        self.visited: set = set()
        self.notes: list[str] = []

    # ---- finding images -------------------------------------------------------------------------------------

    def node(self, path: Path | str, sha: str | None = None, entry: Entry | None = None) -> _Node:
        path = Path(path)
        found_by = "path"
        if entry is None:
            entry = self.by_path.get(stored_path(path))
            if entry is not None and sha and _is_file(path) and self.file_sha(entry) != sha:
                entry = None  # the file at that path was replaced since it was used
        if entry is None:  # by the recorded hash, else by what the file holds now (a copy of a history image)
            now = _sha256(path) if _is_file(path) else None
            for content in dict.fromkeys(value for value in (sha, now) if value):
                entry = self.by_sha(content)
                if entry is not None:
                    break
            found_by = "sha256"
        if entry is not None:
            return _Node(Path(entry.path), entry, dict(entry.params), entry.created, found_by)
        recipe = _file_recipe(path)
        return _Node(path, None, recipe or {}, _mtime(path), "file" if recipe else "none")

    def file_sha(self, entry: Entry) -> str | None:
        if entry.id not in self._sha:
            self._sha[entry.id] = _sha256(entry.path) if _is_file(entry.path) else None
            self.hashed += self._sha[entry.id] is not None
        return self._sha[entry.id]

    def by_sha(self, sha: str) -> Entry | None:
        for entry in reversed(self.entries):  # the newest first
            if entry.id not in self._sha and self.hashed >= MAX_HASHED:
                self.notes.append(f"stopped hashing history files after {MAX_HASHED}: an older start image may "
                                  "not be found")
                return None
            if self.file_sha(entry) == sha:
                return entry
        return None

    # ---- walking back ---------------------------------------------------------------------------------------

    def walk(self, node: _Node, depth: int, used_at: float | None) -> None:
        keys = {("file", stored_path(node.path))}
        keys |= {("entry", node.entry.id)} if node.entry is not None else set()
        at = node.time if node.time is not None else used_at
        if keys & self.visited:
            self.add(at, Event(used_at, "cycle", f"{_name(node.path)} is already in this chain (it is this image "
                                                 f"itself or made from it): the walk back stops here",
                               str(node.path), _id(node), {"path": str(node.path)}))
            return
        if depth > MAX_DEPTH:
            self.add(at, Event(used_at, "limit", f"more than {MAX_DEPTH} start images back: the walk stops at "
                                                 f"{_name(node.path)}", str(node.path), _id(node)))
            return
        self.visited |= keys
        recipe = node.recipe
        if recipe.get("job") == "upscale":
            self.upscale(node, depth)
        elif recipe.get("job") == "edit":
            self.edit(node, depth)
        elif recipe:
            self.generation(node, depth)
        else:
            self.add(at, Event(node.time, "unknown", f"{_name(node.path)}: no recipe and no history entry, so how "
                                                     "it was made is not recorded", str(node.path)))

    def upscale(self, node: _Node, depth: int) -> None:
        recipe = node.recipe
        source = recipe.get("input")
        upscaler = recipe.get("upscaler") or {}
        sizes = "x".join(map(str, recipe.get("input_size") or ())), "x".join(map(str, recipe.get("output_size")
                                                                                  or ()))
        if source:
            parent = self.node(source)
            if not _is_file(Path(source)) and parent.entry is None:
                self.add(node.time, Event(node.time, "start_image", f"the upscaled image {_name(source)} is "
                                                                    "missing (not on disk, not in the history)",
                                          str(source), None, {"path": str(source), "missing": True}))
            else:
                self.walk(parent, depth + 1, node.time)
        self.add(node.time, Event(node.time, "upscale",
                                  f"upscaled {_name(source) if source else 'an image'} ({sizes[0]}) to "
                                  f"{_name(node.path)} ({sizes[1]}) with {upscaler.get('name', '?')} "
                                  f"({recipe.get('scale', '?')}x)", str(node.path), _id(node),
                                  {"input": source, "input_size": recipe.get("input_size"),
                                   "output_size": recipe.get("output_size"), "scale": recipe.get("scale"),
                                   "upscaler": upscaler, "tile": recipe.get("tile")}))

    def edit(self, node: _Node, depth: int) -> None:
        """An image changed by an instruction (``desktop-app edit``): its input first, then the edit."""
        recipe = node.recipe
        source = recipe.get("image")
        if source:
            parent = self.node(source)
            if not _is_file(Path(source)) and parent.entry is None:
                self.add(node.time, Event(node.time, "start_image", f"the edited image {_name(source)} is missing "
                                                                    "(not on disk, not in the history)",
                                          str(source), None, {"path": str(source), "missing": True}))
            else:
                self.walk(parent, depth + 1, node.time)
        self.add(node.time, Event(node.time, "edit",
                                  f"edited {_name(source) if source else 'an image'} into {_name(node.path)} by "
                                  f"the instruction \"{recipe.get('instruction') or recipe.get('prompt') or ''}\" "
                                  f"with {recipe.get('model_name') or recipe.get('model') or '?'} (seed "
                                  f"{recipe.get('seed', '?')})", str(node.path), _id(node),
                                  {"input": source, "instruction": recipe.get("instruction"),
                                   "image_sha256": recipe.get("image_sha256"), "model": recipe.get("model"),
                                   "seed": recipe.get("seed")}))

    def generation(self, node: _Node, depth: int) -> None:
        recipe = node.recipe
        init = recipe.get("init_image")
        if init:
            self.walk_start_image(node, depth)
        session = [node.entry] if node.entry is not None else []
        while session and self.previous.get(session[-1].id) is not None:
            if len(session) > MAX_SESSION:
                self.notes.append(f"the session before {_name(node.path)} was cut at {MAX_SESSION} attempts")
                break
            session.append(self.previous[session[-1].id])
        if node.entry is None:
            self.attempt(node, None)
        for entry in reversed(session):
            previous = self.previous.get(entry.id)
            self.attempt(_Node(entry.path, entry, dict(entry.params), entry.created, "path"),
                         dict(previous.params) if previous is not None else None)

    def walk_start_image(self, node: _Node, depth: int) -> None:
        init, sha = str(node.recipe["init_image"]), node.recipe.get("init_image_sha256")
        parent = self.node(init, sha)
        if parent.entry is None and parent.found_by == "none":
            return  # missing, or not made here: the attempt's start image event says which
        self.walk(parent, depth + 1, node.time)

    def attempt(self, node: _Node, previous: dict | None) -> None:
        key = ("attempt", node.entry.id if node.entry is not None else stored_path(node.path))
        if key in self.told:
            return
        self.told.add(key)
        recipe, at = node.recipe, node.time
        changes = _changes(previous, recipe)
        for event in self.image_inputs(node, previous):
            self.add(at, event)
        if previous is None:
            text = f"generated {_name(node.path)}: {_settings(recipe)}"
        elif changes:
            text = f"generated {_name(node.path)}: " + "; ".join(change["text"] for change in changes)
        else:
            text = f"generated {_name(node.path)} again with the same settings"
        self.add(at, Event(at, "attempt", text, str(node.path), _id(node),
                           {"changes": changes, "request": _request(recipe), "found_by": node.found_by,
                            "missing": not _is_file(node.path)}))
        upscaler = recipe.get("upscaler")
        if isinstance(upscaler, dict) and upscaler:
            self.add(at, Event(at, "upscale", f"upscaled {_name(node.path)} with {upscaler.get('name', '?')} as "
                                              f"part of the generation", str(node.path), _id(node),
                               {"upscaler": upscaler, "output_size": recipe.get("output_size")}))
        if node.entry is not None and node.entry.favourite:
            self.add(at, Event(None, "favourite", f"marked {_name(node.path)} as a favourite (the history keeps "
                                                  "no time for this)", str(node.path), _id(node),
                               {"favourite": True}))

    def image_inputs(self, node: _Node, previous: dict | None) -> list[Event]:
        """The start image, mask and outpaint borders of an attempt, when they are new since ``previous``."""
        recipe, at, before = node.recipe, node.time, previous or {}
        events = []
        init = recipe.get("init_image")
        if init and _image_key(recipe, "init_image") != _image_key(before, "init_image"):
            events.append(self.start_image_event(node))
        mask = recipe.get("mask")
        if mask and _image_key(recipe, "mask") != _image_key(before, "mask"):
            sha = recipe.get("mask_sha256")
            computed = not sha and _is_file(Path(mask))
            sha = sha or (_sha256(Path(mask)) if computed else None)
            how = f"sha {sha[:12]}" + (", computed from the file now" if computed else "") if sha else "no sha"
            gone = "" if _is_file(Path(mask)) else "; the mask file is missing"
            events.append(Event(at, "mask", f"mask painted ({how}): {_name(mask)}, feather "
                                            f"{recipe.get('mask_blur', '?')}{gone}", str(mask), _id(node),
                                {"mask": str(mask), "mask_sha256": sha, "sha256_computed": computed,
                                 "missing": not _is_file(Path(mask)), "mask_blur": recipe.get("mask_blur")}))
        outpaint = recipe.get("outpaint")
        if outpaint and outpaint != before.get("outpaint"):
            sides = ", ".join(f"{side} {value}" for side, value in zip(("left", "top", "right", "bottom"),
                                                                          outpaint))
            events.append(Event(at, "outpaint", f"canvas extended (outpaint): {sides} pixels", str(node.path),
                                _id(node), {"outpaint": list(outpaint)}))
        return events

    def start_image_event(self, node: _Node) -> Event:
        init, sha = str(node.recipe["init_image"]), node.recipe.get("init_image_sha256")
        parent = self.node(init, sha)
        on_disk = _is_file(Path(init))
        now = _sha256(Path(init)) if on_disk else None
        if parent.entry is not None:
            where = f"history #{parent.entry.id}, made {when(parent.entry.created)}"
            where += f", found by its {parent.found_by}" if parent.found_by == "sha256" else ""
            where += "; its file is missing, the history keeps its recipe" if parent.entry.missing else ""
        elif parent.found_by == "file":
            where = "not in the history; its own recipe was read from the file"
        elif on_disk:
            where = "not made here: no history entry and no recipe"
        else:
            where = "missing: not on disk and not in the history"
        if on_disk and sha and now != sha:
            where += "; the file there now is not the one used (its sha256 differs)"
        strength = node.recipe.get("strength")
        return Event(node.time, "start_image", f"start image picked: {_name(init)} ({where}), strength {strength}",
                     init, _id(node), {"path": init, "sha256": sha, "sha256_now": now, "missing": not on_disk,
                                       "entry_id": parent.entry.id if parent.entry is not None else None,
                                       "found_by": parent.found_by, "strength": strength})

    def add(self, at: float | None, event: Event) -> None:
        self.events.append((at if at is not None else float("inf"), len(self.events), event))

    def ordered(self) -> list[Event]:
        return [event for _, _, event in sorted(self.events, key=lambda item: (item[0], item[1]))]


def _previous_attempts(entries: list[Entry]) -> dict[int, Entry | None]:
    """Each generation's previous attempt under the session rule (entries sorted by time)."""
    latest: dict[str, Entry] = {}
    previous: dict[int, Entry | None] = {}
    for entry in entries:
        if entry.params.get("job") in ("upscale", "edit"):
            continue
        before = latest.get(entry.model)
        previous[entry.id] = before if before is not None and entry.created - before.created <= SESSION_GAP \
            else None
        latest[entry.model] = entry
    return previous


# ---- files ----------------------------------------------------------------------------------------------------


def _open_history() -> tuple[History | None, str | None]:
    path = default_db_path()
    if not path.is_file():
        return None, "there is no history in the user folder: only the files' own recipes were read"
    try:
        history = History(path)
        history.entries(limit=1)
        return history, None
    except sqlite3.Error as exc:
        return None, f"the history could not be opened ({exc}); only the files' own recipes were read"


def _file_recipe(path: Path) -> dict | None:
    """Our recipe chunk in an image file, as written (an upscale's ``job`` and ``input`` included)."""
    from desktop_app.studio.foreign_recipes import load_json
    from desktop_app.studio.image_metadata import Unreadable, read_image_text

    if not _is_file(path):
        return None
    try:
        chunks = read_image_text(path).chunks
    except (Unreadable, OSError):
        return None
    recipe = load_json(chunks.get("recipe"))
    return recipe if isinstance(recipe, dict) else None


def _sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def _is_file(path: Path) -> bool:
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except (OSError, ValueError):
        return None


def _name(path) -> str:
    return printable(str(path), 300)


def _id(node: _Node) -> int | None:
    return node.entry.id if node.entry is not None else None


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")

"""The user's model library: the models, LoRAs, embeddings and upscalers the app knows by name.

Stored as ``library.json`` in the user folder (written atomically). Files are never copied or deleted: an
entry points at the user's file, a registered folder (another tool's model folder) is scanned when the library
is read, and diffusers models already in the Hugging Face cache are listed too. Every file is inspected
(``model_files.inspect``) before it is registered, so a bad file is refused and nothing is half-registered.

Torch-free: the command line and the window read it before torch loads.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from desktop_app.models import flux_fill, model_files
from desktop_app import paths
from desktop_app.paths import write_text_atomically
from desktop_app.models import model_folder
from desktop_app.models.tool_layouts import TOOL_LAYOUTS, detect_layout, parts_note  # noqa: F401 - re-exported
from desktop_app.errors import ModelError
from desktop_app.models.safe_names import UnsafeName, check_name
from desktop_app.errors import printable
from desktop_app.resources import DEFAULT_MODEL
from desktop_app.resources import DEFAULT_MODEL_NAME, default_model_dir

LIBRARY_FILE = "library.json"
FORMAT_VERSION = 1
MODEL_KINDS = (model_files.CHECKPOINT, model_files.DIFFUSERS)
USABLE_KINDS = (*MODEL_KINDS, model_files.LORA, model_files.EMBEDDING, model_files.UPSCALER)
SCANNED_SUFFIXES = (".safetensors", ".gguf", ".pth", ".pt", ".ckpt", ".bin")
MAX_LIBRARY_BYTES = 64 * 1024 * 1024
LIBRARY_DEPTH = 4  # {"entries": [{"name": ...}]}

@dataclass(frozen=True)
class Entry:
    name: str
    path: str
    kind: str
    family: str
    size: int
    source: str  # "added", "scanned: <folder>", "hf-cache", "downloaded", "embedded"
    layout: str = ""
    details: str = ""
    prediction_type: str = ""  # for checkpoints whose tensors cannot tell (SD 2.x): "v_prediction"/"epsilon"

    @property
    def family_name(self) -> str:
        return model_files.FAMILY_NAMES.get(self.family, self.family)

    @property
    def family_cell(self) -> str:
        """The family for a table: "sd2 (epsilon)" when a prediction type is remembered, "flux (FLUX.1 Fill)"
        for an inpainting-only Fill model (model_files names it in the details), "—" when unknown."""
        family = self.family if self.family != "unknown" else "—"
        if family == "flux" and f"({flux_fill.NAME})" in self.details:
            return f"{family} ({flux_fill.NAME})"
        if self.prediction_type:
            return f"{family} ({'v' if self.prediction_type == 'v_prediction' else 'epsilon'})"
        return family


@dataclass
class FolderScan:
    """What scanning a folder found: the entries, and the files skipped with the reason."""

    folder: str
    layout: str  # "AUTOMATIC1111", "ComfyUI" or "flat"
    entries: list[Entry] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the folder holds that is not listed, and why


# ---------------------------------------------------------------------------------------------------------------
# the stored file


def library_path() -> Path:
    return paths.home() / LIBRARY_FILE


def _load() -> dict:
    path = library_path()
    if not path.is_file():
        return {"version": FORMAT_VERSION, "entries": [], "folders": []}
    try:
        data = model_folder.read_json_file(path, "model library", MAX_LIBRARY_BYTES, LIBRARY_DEPTH)
    except ModelError as exc:
        raise ModelError(f"The model library cannot be read ({exc}); move {printable(path)} away to start "
                         "afresh.") from None
    if not isinstance(data, dict) or not isinstance(data.setdefault("entries", []), list) or not isinstance(
            data.setdefault("folders", []), list):
        raise ModelError(f"The model library {printable(path)} is damaged (not the library's JSON layout); move "
                         "it away to start afresh.")
    data["folders"] = [folder for folder in data["folders"] if isinstance(folder, str)]
    return data


def setting(key: str) -> dict:
    """A map stored beside the entries in library.json (e.g. "components": family -> folder); {} when absent."""
    value = _load().get(key)
    return dict(value) if isinstance(value, dict) else {}


def store_setting(key: str, value: dict) -> None:
    data = _load()
    data[key] = dict(value)
    _save(data)


def _save(data: dict) -> None:
    """Write the library atomically: a temporary file in the same folder, then os.replace."""
    path = library_path()
    data["version"] = FORMAT_VERSION
    write_text_atomically(path, json.dumps(data, indent=2), prefix=".library-")


_TEXT_FIELDS = ("name", "path", "kind", "family", "source", "layout", "details", "prediction_type")


def _stored_entry(item) -> Entry | None:
    """An entry of library.json, or None when it is damaged (a field missing or of the wrong type)."""
    if not isinstance(item, dict):
        return None
    known = {k: v for k, v in item.items() if k in Entry.__dataclass_fields__}
    if not all(isinstance(known.get(k, ""), str) for k in _TEXT_FIELDS) or not isinstance(known.get("size"), int):
        return None
    try:
        return Entry(**known)
    except TypeError:  # a required field missing
        return None


def _stored_entries(data: dict, skipped: list | None = None) -> list[Entry]:
    found = []
    for item in data["entries"]:
        entry = _stored_entry(item)
        if entry is not None:
            found.append(entry)
        elif skipped is not None:
            skipped.append((str(library_path()), "an entry of the library file is damaged (a field is missing "
                                                 "or of the wrong type); it is ignored"))
    return found


# ---------------------------------------------------------------------------------------------------------------
# adding and removing


def _entry(info: model_files.FileInfo, name: str, source: str) -> Entry:
    return Entry(name=name, path=str(Path(info.path).resolve()), kind=info.kind, family=info.family,
                 size=info.size_bytes, source=source, layout=info.layout, details=info.details)


def _check_name(name: str) -> str:
    """A library name: one safe name (safe_names.check_name: no control characters or terminal escapes, no
    '/', '\\' or ':' (":" separates a LoRA's weight, --lora NAME:0.8), no leading '.', '~' or '-' (it would read
    as a path or an option)), and not "default"."""
    name = name.strip() if isinstance(name, str) else name
    try:
        name = check_name(name, "the model name")
    except UnsafeName as exc:
        raise ModelError(f"{str(exc)[0].upper()}{str(exc)[1:]}; choose another with --name.") from None
    if name == DEFAULT_MODEL:
        raise ModelError(f'"{DEFAULT_MODEL}" means the embedded model; choose another name with --name.')
    return name


def add(path, name: str | None = None, source: str = "added", prediction_type: str | None = None) -> Entry:
    """Register the file or diffusers folder at ``path`` under ``name`` (default: its file or folder name).
    The file is inspected first; on any error nothing is registered. ``prediction_type`` ("v" or "epsilon")
    is remembered for a single-file checkpoint and used whenever it loads (SD 2.x files cannot tell)."""
    path = Path(path).expanduser()
    info = model_files.inspect(path)
    if info.kind not in USABLE_KINDS:
        raise ModelError(f"{printable(path.name)} is not a model this app can use: {info.details}")
    if prediction_type is not None:
        prediction_type = _checked_prediction_type(prediction_type, info)
    if name is None:  # the file or folder name, made usable as a name
        name = _unique(path.stem if path.is_file() else path.resolve().name, set())
    name = _check_name(name)
    data = _load()
    resolved = str(path.resolve())
    for other in entries():
        if other.name == name:
            raise ModelError(f"The library already has a model named {name!r} ({printable(other.path)}); choose "
                             "another name with --name, or remove that one first.")
        if other.path == resolved and other.source != "embedded":
            raise ModelError(f"{printable(path)} is already in the library as {printable(repr(other.name))}.")
    entry = replace(_entry(info, name, source), prediction_type=prediction_type or "")
    data["entries"].append(asdict(entry))
    _save(data)
    return entry


def _checked_prediction_type(value: str, info: model_files.FileInfo) -> str:
    if info.kind != model_files.CHECKPOINT:
        raise ModelError(f"--prediction-type applies to single-file checkpoints; {Path(info.path).name} is a "
                         f"{info.kind} (a diffusers folder says it in its scheduler config).")
    return model_files.normalize_prediction_type(value)


def stored_prediction_type(path) -> str:
    """The prediction type stored with the library entry of the file at ``path`` ("" when none is, or when
    the library cannot be read: a damaged library must not stop a file from loading by its path)."""
    resolved = str(Path(path).expanduser().resolve())
    try:
        data = _load()
    except ModelError:
        return ""
    for entry in _stored_entries(data):
        if entry.path == resolved and entry.prediction_type:
            return entry.prediction_type
    return ""


def remove(name: str) -> Entry:
    """Unregister ``name`` (or a registered folder, by its path); the user's files are never deleted."""
    data = _load()
    stored = _stored_entries(data)
    for index, entry in enumerate(stored):
        if entry.name == name:
            del data["entries"][index]
            _save(data)
            return entry
    folder = str(Path(name).expanduser().resolve())
    if folder in data["folders"]:
        data["folders"].remove(folder)
        _save(data)
        return Entry(name=name, path=folder, kind="folder", family="", size=0, source="folder")
    for entry in entries():
        if entry.name == name:
            if entry.source == "embedded":
                raise ModelError(f"{name!r} is the embedded model; it cannot be removed.")
            if entry.source.startswith("scanned: ") and entry.source[9:] not in data["folders"]:
                raise ModelError(f"{name!r} is a file in the app's folder {entry.source[9:]}; move or delete "
                                 "the file itself to take it out.")
            if entry.source.startswith("scanned: "):
                raise ModelError(f"{name!r} comes from the folder {entry.source[9:]}; remove that folder with "
                                 f"`models remove {entry.source[9:]}`.")
            raise ModelError(f"{name!r} is in the Hugging Face cache; remove it with `hf cache delete`.")
    raise ModelError(_unknown_message(name, [e.name for e in entries()], "in the library"))


# ---------------------------------------------------------------------------------------------------------------
# folders of other tools


def add_folder(path) -> FolderScan:
    """Register another tool's model folder (AUTOMATIC1111, ComfyUI, or a flat folder of files). It is scanned
    whenever the library is read; nothing is copied. Returns what a scan finds now."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ModelError(f"Model folder not found: {folder} is not a folder.")
    if (folder / "model_index.json").is_file():
        raise ModelError(f"{folder} is a diffusers model, not a folder of models; add it with `models add`.")
    folder = folder.resolve()
    data = _load()
    if str(folder) in data["folders"]:
        raise ModelError(f"The folder {folder} is already in the library.")
    result = scan_folder(folder, taken={e.name for e in entries()})
    data["folders"].append(str(folder))
    _save(data)
    return result


def folders() -> list[str]:
    return list(_load()["folders"])


_scan_cache: dict[tuple[str, int, int], model_files.FileInfo | str] = {}


def _inspect_cached(path: Path, upscaler: bool) -> model_files.FileInfo:
    try:
        stat = path.stat()
    except OSError as exc:  # removed or a broken link since the folder was listed
        raise ModelError(f"Cannot read {printable(path)}: {exc.strerror or exc}.") from None
    key = (str(path), stat.st_size, stat.st_mtime_ns)
    if key not in _scan_cache:
        try:
            _scan_cache[key] = model_files.inspect(path, allow_pytorch_upscaler=upscaler)
        except ModelError as exc:
            _scan_cache[key] = str(exc)
        except RecursionError:  # a backstop: the parsers bound nesting, so no file should get here
            _scan_cache[key] = f"{printable(path.name)} is damaged (nested too deeply to read)."
    found = _scan_cache[key]
    if isinstance(found, str):
        raise ModelError(found)
    return found


def scan_folder(folder, taken: set[str] | None = None) -> FolderScan:
    folder = Path(folder)
    tool, layout = detect_layout(folder)
    result = FolderScan(str(folder), tool, notes=[n for n in [parts_note(folder, tool)] if n])
    taken = set(taken or ())
    source = f"scanned: {folder}"
    for sub, expected in layout.items():
        where = folder / sub
        if not where.is_dir():
            continue
        models = sorted(p.parent for p in where.rglob("model_index.json") if p.parent != where)
        files = sorted(p for p in where.rglob("*") if p.is_file() and p.suffix.lower() in SCANNED_SUFFIXES
                       and not any(part.startswith(".") for part in p.relative_to(where).parts)
                       and not any(m in p.parents for m in models))  # a diffusers folder's files: the folder
        for path in models + files:
            try:
                info = _inspect_cached(path, upscaler=expected == model_files.UPSCALER)
            except ModelError as exc:
                result.skipped.append((str(path), str(exc)))
                continue
            if info.kind not in USABLE_KINDS:
                result.skipped.append((str(path), info.details))
                continue
            name = _unique(path.stem if path.is_file() else path.name, taken)
            taken.add(name)
            result.entries.append(_entry(info, name, source))
    return result


def _unique(name: str, taken: set[str]) -> str:
    name = name.replace(":", "-").replace("/", "-").replace("\\", "-") or "model"
    if name == DEFAULT_MODEL:
        name = f"{name}-file"
    candidate, n = name, 2
    while candidate in taken:
        candidate, n = f"{name}-{n}", n + 1
    return candidate


# ---------------------------------------------------------------------------------------------------------------
# the Hugging Face cache


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")).expanduser() / "huggingface" / "hub"


def scan_hf_cache(cache_dir=None) -> list[Entry]:
    """The diffusers models (a snapshot with model_index.json) present in the Hugging Face cache."""
    cache = Path(cache_dir) if cache_dir is not None else hf_cache_dir()
    if not cache.is_dir():
        return []
    from huggingface_hub import scan_cache_dir

    try:
        info = scan_cache_dir(cache)
    except Exception:  # noqa: BLE001 - a damaged cache must not break the library
        return []
    found = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model" or not repo.revisions:
            continue
        revision = max(repo.revisions, key=lambda r: ("main" in r.refs, r.last_modified))
        snapshot = Path(revision.snapshot_path)
        if not (snapshot / "model_index.json").is_file():
            continue
        try:
            model = _inspect_cached(snapshot, upscaler=False)
        except ModelError:
            continue
        found.append(Entry(name=repo.repo_id, path=str(snapshot), kind=model.kind, family=model.family,
                           size=revision.size_on_disk, source="hf-cache", layout=model.layout,
                           details=model.details))
    return found


# ---------------------------------------------------------------------------------------------------------------
# reading the library


def embedded_entry() -> Entry | None:
    folder = default_model_dir()
    if not (folder / "model_index.json").is_file():
        return None
    size = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
    return Entry(name=DEFAULT_MODEL, path=str(folder), kind=model_files.DIFFUSERS, family="embedded", size=size,
                 source="embedded", layout="diffusers",
                 details=f"The embedded default model ({DEFAULT_MODEL_NAME}).")


def app_folders() -> list[tuple[Path, str]]:
    """The app's own folders whose files are listed without being added: LoRAs (training writes there)
    and upscalers."""
    return [(paths.loras_dir(), model_files.LORA), (paths.upscalers_dir(), model_files.UPSCALER)]


def _scan_app_folder(folder: Path, expected: str, taken: set[str], skipped: list | None = None) -> list[Entry]:
    found = []
    for path in sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SCANNED_SUFFIXES):
        try:
            info = _inspect_cached(path, upscaler=expected == model_files.UPSCALER)
        except ModelError as exc:
            if skipped is not None:
                skipped.append((str(path), str(exc)))
            continue
        if info.kind in USABLE_KINDS:
            name = _unique(path.stem, taken)
            found.append(_entry(info, name, f"scanned: {folder}"))
    return found


def entries(kind: str | None = None, *, hf_cache: bool = True, skipped: list | None = None) -> list[Entry]:
    """Everything the library knows: the embedded model, added files, registered folders (scanned now) and
    the Hugging Face cache. ``kind``: only that kind ("checkpoint", "diffusers", "lora", ...; "model" means
    checkpoints and diffusers folders). A damaged file in a scanned folder is left out, never fatal to the
    rest: ``skipped``, a list, receives (path, reason) for each."""
    data = _load()
    found = [e for e in [embedded_entry()] if e is not None] + _stored_entries(data, skipped)
    taken = {e.name for e in found}
    for folder in data["folders"]:
        if Path(folder).is_dir():
            scan = scan_folder(folder, taken)
            found += scan.entries
            taken |= {e.name for e in scan.entries}
            if skipped is not None:
                skipped += scan.skipped
    for folder, expected in app_folders():
        for entry in _scan_app_folder(folder, expected, taken, skipped):
            found.append(entry)
            taken.add(entry.name)
    if hf_cache:
        found += [e for e in scan_hf_cache() if e.name not in taken]
    if kind == "model":
        return [e for e in found if e.kind in MODEL_KINDS]
    return [e for e in found if kind is None or e.kind == kind]


def find(name: str) -> Entry | None:
    for entry in entries():
        if entry.name == name:
            return entry
    return None


def _unknown_message(name: str, names: list[str], where: str, skipped=()) -> str:
    for path, reason in skipped:  # the name of a damaged file: say what is wrong with it
        if Path(path).stem == name:
            return f"{printable(repr(name))} is unusable: {reason}"
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    close += [n for n in names if name.lower() in n.lower() and n not in close][: 3 - len(close)]
    hint = f" Did you mean {', '.join(printable(repr(n)) for n in close)}?" if close else ""
    return f"Unknown model {printable(repr(name))}: no file or folder by that path and no such name {where}.{hint}"


def resolve_model(name_or_path: str) -> str:
    """What the loader should load for ``name_or_path``: "default", a library name's path, or an existing
    path as given. A ModelError lists close matches for an unknown name."""
    name_or_path = str(name_or_path).strip()
    if name_or_path == DEFAULT_MODEL:
        return DEFAULT_MODEL
    if Path(name_or_path).expanduser().exists():
        return name_or_path
    skipped: list = []
    models = entries(skipped=skipped)
    for entry in models:
        if entry.name == name_or_path:
            if entry.kind not in MODEL_KINDS:
                raise ModelError(f"{printable(repr(entry.name))} is a {entry.kind}, not a model to generate with; "
                                 "use a checkpoint or a diffusers folder.")
            return entry.path
    if name_or_path.startswith(("/", "~", ".")) or Path(name_or_path).is_absolute():
        raise ModelError(f"Model not found: {printable(Path(name_or_path).expanduser())} does not exist.")
    names = [e.name for e in models if e.kind in MODEL_KINDS]
    raise ModelError(_unknown_message(name_or_path, names, "in the model library (desktop-app models list)",
                                      skipped))


def resolve_lora(name_or_path: str) -> Path:
    """The LoRA file ``name_or_path`` means: an existing path, a library LoRA's name, or a file in
    ``paths.loras_dir()`` (with or without ``.safetensors``)."""
    name_or_path = str(name_or_path).strip()
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    skipped: list = []
    loras = entries(model_files.LORA, hf_cache=False, skipped=skipped)
    for entry in loras:
        if entry.name == name_or_path:
            return Path(entry.path)
    folder = paths.loras_dir()
    for candidate in (folder / name_or_path, folder / f"{name_or_path}.safetensors"):
        if candidate.is_file():
            return candidate
    names = [e.name for e in loras] + sorted(p.stem for p in folder.glob("*.safetensors"))
    message = _unknown_message(name_or_path, names, f"among the library's LoRAs or in {folder}", skipped)
    raise ModelError(message.replace("Unknown model", "Unknown LoRA", 1))

"""A short model hash for recipes: sha256 over a model's weight files, the first 10 hex digits (as
AUTOMATIC1111 writes ``Model hash``). Hashing gigabytes takes a while, so it is done once per model and kept
in a small JSON cache in the user folder, keyed by the files' paths, sizes and modification times.

No torch here: plain hashlib, so the CLI and tests can use it cheaply.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth", ".gguf", ".onnx")
SHORT = 10
_memory: dict[str, str] = {}
_lock = threading.Lock()


def weight_files(path: Path) -> list[Path]:
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        return []
    return sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in WEIGHT_SUFFIXES)


def _signature(path: Path, files: list[Path]) -> str:
    parts = []
    for file in files:
        stat = file.stat()
        parts.append(f"{file.relative_to(path) if file != path else file.name}:{stat.st_size}:"
                     f"{stat.st_mtime_ns}")
    return f"{path.resolve()}|" + "|".join(parts)


def _cache_file() -> Path | None:
    try:
        from desktop_app import paths

        return paths.home() / "model-hashes.json"
    except OSError:
        return None


def model_hash(path: Path, full: bool = False) -> str | None:
    """The hash of the model at ``path`` (a folder or a single file), or None when it has no weights."""
    path = Path(path)
    files = weight_files(path)
    if not files:
        return None
    key = _signature(path, files)
    with _lock:
        digest = _memory.get(key)
        if digest is None:
            cache = _read_cache()
            digest = cache.get(key)
            if digest is None:
                digest = _hash_files(path, files)
                cache[key] = digest
                _write_cache(cache)
            _memory[key] = digest
    return digest if full else digest[:SHORT]


def _hash_files(root: Path, files: list[Path]) -> str:
    sha = hashlib.sha256()
    for file in files:
        if len(files) > 1:  # a folder: names are part of what the model is
            sha.update(str(file.relative_to(root)).replace(os.sep, "/").encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                sha.update(block)
    return sha.hexdigest()


def _read_cache() -> dict:
    file = _cache_file()
    try:
        data = json.loads(file.read_text(encoding="utf-8")) if file else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(cache: dict) -> None:
    file = _cache_file()
    if file is None:
        return
    from desktop_app.paths import write_text_atomically

    try:
        write_text_atomically(file, json.dumps(cache, indent=0), prefix=".model-hashes-")
    except OSError:  # a cache: never worth failing a generation for
        pass


CONFIG_SUFFIXES = (".json", ".txt", ".model", ".tiktoken")  # configs, tokenizer vocabularies and merges
MAX_CONFIG_BYTES = 64 * 1024 * 1024


def components_record(folder) -> dict | None:
    """What a recipe records of the components folder a transformer file ran with (its text encoders,
    tokenizers, VAE and scheduler): its path and a short fingerprint, the sha256 of its config and tokenizer
    files and of each weight file's name and size. Cheap on purpose: the weights (a T5-XXL is 9 GB) are not
    read; the transformer file itself is hashed in full (``model_hash``). None when ``folder`` is None."""
    if folder is None:
        return None
    root = Path(folder)
    sha = hashlib.sha256()
    try:
        for file in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = str(file.relative_to(root)).replace(os.sep, "/")
            if relative.startswith("transformer/"):  # replaced by the file, or only its config
                continue
            size = file.stat().st_size
            sha.update(f"{relative}:{size}\n".encode())
            if file.suffix.lower() in CONFIG_SUFFIXES and size <= MAX_CONFIG_BYTES:
                sha.update(file.read_bytes())
    except OSError:
        return {"path": str(root), "hash": None}
    return {"path": str(root), "hash": sha.hexdigest()[:SHORT]}

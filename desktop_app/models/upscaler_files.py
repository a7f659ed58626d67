"""Upscaler model files without torch: which file a name means, what a file really holds, its hash.

The command line and the window use this before torch loads. The content decides how a file is read, never
its name: a pickle or a zip renamed ``.safetensors`` is refused, a TorchScript archive is refused whatever it
is called (it carries code), and only a plain state dict reaches spandrel.

Names: ``"default"`` is the model folder's own ``upscaler/model.safetensors`` (the embedded model's when no
folder is given); a path is that file (or a model folder's upscaler); a bare name is a file in
``paths.upscalers_dir()`` (``<user folder>/models/upscalers``), with or without its extension.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickletools
import struct
import zipfile
from pathlib import Path

from desktop_app.resources import default_model_dir
from desktop_app.errors import printable
from desktop_app.models import model_folder
from desktop_app.errors import ModelError, RequestError

DEFAULT_UPSCALER = "default"
EXTENSIONS = (".safetensors", ".pth", ".pt", ".bin", ".ckpt")
SHORT_HASH = 10  # the first 10 hex digits of the sha256, as AUTOMATIC1111 shows model hashes

# what sniff() answers
SAFETENSORS, TORCH_ZIP, TORCHSCRIPT, PICKLE, EMPTY, BROKEN_ZIP, UNKNOWN = (
    "safetensors", "torch-zip", "torchscript", "pickle", "empty", "broken-zip", "unknown")


def upscalers_dir() -> Path:
    from desktop_app.paths import upscalers_dir as folder

    return folder()


def available() -> list[Path]:
    """The upscaler files in the user's upscalers folder, by name."""
    try:
        folder = upscalers_dir()
    except OSError:
        return []
    return sorted((p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS),
                  key=lambda p: p.name.lower())


def resolve(choice: str, folder: Path | str | None = None, field: str = "upscale") -> Path:
    """The file ``choice`` names. ``folder``: the model folder whose upscaler "default" means (the embedded
    model's when None). Raises RequestError(field) for a name that matches nothing."""
    choice = str(choice).strip()
    if not choice:
        raise RequestError(field, 'name an upscaler: "default", a file, or a name in the upscalers folder')
    if choice == DEFAULT_UPSCALER:
        where = Path(folder) if folder is not None else default_model_dir()
        path = model_folder.upscaler_path(where)
        if path is None:
            raise RequestError(field, f"the model in {where} has no upscaler of its own "
                                      f"(no upscaler/model.safetensors); name an upscaler file instead")
        return path
    path = Path(choice).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        own = model_folder.upscaler_path(path)
        if own is not None:
            return own
        raise RequestError(field, f"{path} is a folder; name an upscaler file (.safetensors or .pth)")
    if not _is_bare_name(choice):
        raise RequestError(field, f"upscaler not found: {path} does not exist")
    library = upscalers_dir()
    for candidate in [library / choice] + [library / f"{choice}{ext}" for ext in EXTENSIONS]:
        if candidate.is_file():
            return candidate
    names = ", ".join(p.name for p in available()) or "none yet"
    raise RequestError(field, f'unknown upscaler {choice!r}: use "default" (the model\'s own), the path of a '
                              f".safetensors or .pth file, or a file in {library} (there: {names})")


def display_name(choice: str, path: Path) -> str:
    """ "default", or the file's name without extension (a model folder's upscaler/model.safetensors is
    named after the folder)."""
    path = Path(path)
    if choice == DEFAULT_UPSCALER:
        return DEFAULT_UPSCALER
    if path.parent.name == "upscaler" and path.stem == "model":
        return f"{path.parent.parent.name} upscaler"
    return path.stem


def _is_bare_name(choice: str) -> bool:
    return not any(sep in choice for sep in ("/", "\\", os.sep)) and not choice.startswith(("~", "."))


def sniff(path: Path) -> str:
    """What the file holds, from its bytes: SAFETENSORS, TORCH_ZIP (torch.save), TORCHSCRIPT, PICKLE (the
    legacy torch.save format or any other pickle), EMPTY, BROKEN_ZIP (a truncated or damaged zip) or
    UNKNOWN."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        return EMPTY
    with path.open("rb") as handle:
        head = handle.read(16)
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return BROKEN_ZIP
        # torch.jit.save writes <name>/constants.pkl and <name>/code/...; torch.save writes <name>/data.pkl only
        if any(n.endswith("constants.pkl") or "/code/" in n for n in names):
            return TORCHSCRIPT
        if any(n.endswith("data.pkl") for n in names):
            return TORCH_ZIP
        return UNKNOWN
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return PICKLE
    if len(head) >= 9:
        (header_size,) = struct.unpack("<Q", head[:8])
        if 2 <= header_size <= size - 8 and head[8:9] == b"{":
            return SAFETENSORS
    return UNKNOWN


def check_readable(path: Path) -> str:
    """sniff(path), or a ModelError saying why the file is not loaded. The format that passes is SAFETENSORS,
    or TORCH_ZIP / PICKLE for a file not named .safetensors (torch.load with weights_only=True decides)."""
    path = Path(path)
    if not path.is_file():  # is_file: a regular file (or a link to one); a named pipe is never opened
        raise ModelError(f"Upscaler not found: {printable(path)} is not a file.")
    try:
        kind = sniff(path)
    except OSError as exc:
        raise ModelError(f"Cannot read the upscaler {path}: {exc.strerror or exc}.") from None
    named_safetensors = path.suffix.lower() == ".safetensors"
    if kind == EMPTY:
        raise ModelError(f"Upscaler {path.name} is an empty file (an interrupted download or copy?).")
    if kind == BROKEN_ZIP:
        raise ModelError(f"Upscaler {path.name} is damaged or truncated: it starts like a zip archive (the "
                         "PyTorch format) but cannot be read as one. Download or copy it again.")
    if kind == TORCHSCRIPT:
        raise ModelError(f"Upscaler {path.name} is a TorchScript archive. TorchScript carries code and is not "
                         "loaded; use the model's .safetensors (or .pth state dict) instead.")
    if kind in (TORCH_ZIP, PICKLE) and named_safetensors:
        raise ModelError(f"Upscaler {path.name} is not a safetensors file: it holds a PyTorch pickle under a "
                         ".safetensors name, and a file that hides its format is not loaded.")
    if kind in (TORCH_ZIP, PICKLE):
        check_pickle(path, kind)
    if kind == UNKNOWN:
        if named_safetensors:
            raise ModelError(f"Upscaler {path.name} is damaged or not a safetensors file (its header is not "
                             "safetensors).")
        raise ModelError(f"Upscaler {path.name} is not a model file: neither safetensors nor a PyTorch "
                         "state dict (.pth).")
    return kind


# ---- what a PyTorch pickle may name ----------------------------------------------------------------------
# A state dict saved with torch.save names only these: its storages, the functions that rebuild tensors from
# them, dtypes, and OrderedDict. Any other import (os.system, builtins.eval, a class of some package) means
# the file holds more than weights: unpickling it can run code. The check reads the opcodes (pickletools),
# never unpickles, and needs no torch, so that scanning a folder stays torch-free.

MAX_PICKLE = 64 * 1024 * 1024  # the pickle part of a state dict is kilobytes; the tensors are stored apart
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # the first pickle of torch.save's legacy (non-zip) format
SAFE_GLOBALS = {("collections", "OrderedDict"), ("torch", "Size"),
                *(("torch._utils", f) for f in ("_rebuild_tensor", "_rebuild_tensor_v2", "_rebuild_tensor_v3",
                                                "_rebuild_parameter", "_rebuild_parameter_with_state"))}
SAFE_TORCH_NAMES = {
    *(f"{t}Storage" for t in ("Float", "Double", "Half", "BFloat16", "Long", "Int", "Short", "Char", "Byte",
                              "Bool", "ComplexFloat", "ComplexDouble", "Untyped")),
    "float32", "float", "float64", "double", "float16", "half", "bfloat16", "int64", "long", "int32", "int",
    "int16", "short", "int8", "uint8", "bool", "complex64", "complex128", "float8_e4m3fn", "float8_e5m2"}
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
            "SHORT_BINSTRING"}


def _safe_global(module: str, name: str) -> bool:
    return (module, name) in SAFE_GLOBALS or (module in ("torch", "torch.storage") and name in SAFE_TORCH_NAMES)


def _scan_one_pickle(stream) -> tuple[list[str], object]:
    """(the imports one pickle names that are not safe, the value of its first opcode). Reads opcodes only;
    raises ValueError for a damaged pickle."""
    unsafe, recent, memo, first = [], [], {}, None
    for index, (opcode, arg, _pos) in enumerate(pickletools.genops(stream)):
        name = opcode.name
        if index == 0:
            first = arg
        if name in ("GLOBAL", "INST"):
            module, _, attr = str(arg).partition(" ")
            if not _safe_global(module, attr):
                unsafe.append(f"{module}.{attr}")
        elif name == "STACK_GLOBAL":
            module, attr = (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)
            if not (isinstance(module, str) and isinstance(attr, str)):
                unsafe.append("an import the check cannot read")
            elif not _safe_global(module, attr):
                unsafe.append(f"{module}.{attr}")
        elif name in ("EXT1", "EXT2", "EXT4"):
            unsafe.append("an import from the copyreg registry")
        if name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = recent[-1] if recent else None
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            recent.append(memo.get(arg))
        elif name in _STRINGS:
            recent.append(arg if isinstance(arg, str) else None)
        elif name not in ("PROTO", "FRAME"):
            recent.append(None)
        del recent[:-2]
    return unsafe, first


def check_pickle(path: Path, kind: str) -> None:
    """A ModelError when the PyTorch file at ``path`` (TORCH_ZIP or PICKLE) names anything but the safe
    imports above, or cannot be read as pickles; nothing is unpickled."""
    path = Path(path)
    shown = printable(path.name)
    try:
        if kind == TORCH_ZIP:
            with zipfile.ZipFile(path) as archive:
                streams = []
                for info in archive.infolist():
                    if info.filename.endswith("data.pkl"):
                        if info.file_size > MAX_PICKLE:
                            raise ModelError(f"Upscaler {shown} is not a state dict this app reads: its pickle "
                                             f"is {info.file_size:,} bytes, more than weights need.")
                        with archive.open(info) as member:
                            streams.append(io.BytesIO(member.read(MAX_PICKLE + 1)))
        else:
            with model_folder.open_regular(path, "upscaler") as handle:
                streams = [io.BytesIO(handle.read(MAX_PICKLE))]
        found = []
        for stream in streams:
            unsafe, first = _scan_one_pickle(stream)
            found += unsafe
            if kind == PICKLE and first == LEGACY_MAGIC:  # version, sys info, the object, the storage keys
                for _ in range(4):
                    found += _scan_one_pickle(stream)[0]
    except (ValueError, zipfile.BadZipFile, EOFError, OSError, NotImplementedError, RuntimeError) as exc:
        raise ModelError(f"Upscaler {shown} is damaged or truncated: its pickle cannot be read "
                         f"({printable(exc, 100)}).") from None
    if found:
        names = ", ".join(printable(n, 60) for n in dict.fromkeys(found))
        raise ModelError(f"Upscaler {shown} is a pickle that holds more than weights ({names[:200]}), so it is "
                         "not loaded: unpickling it could run code. Use a .safetensors file.")


_hashes: dict[tuple[str, int, int], str] = {}


def sha256(path: Path) -> str:
    """The file's full sha256 (hex), cached by path, size and modification time."""
    path = Path(path)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _hashes:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        _hashes[key] = digest.hexdigest()
    return _hashes[key]


def describe(choice: str, path: Path) -> dict:
    """What a recipe records about an upscaler file: its name, file name and short sha256."""
    return {"name": display_name(choice, path), "file": Path(path).name, "sha256": sha256(path)[:SHORT_HASH]}

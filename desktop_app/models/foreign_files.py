"""Files that are not what a model file should be, told apart by their first bytes whatever their name: an
empty file, a Git-LFS pointer, a Python pickle or a PyTorch zip archive (unpickling can run code, so they are
refused). Torch-free; models/model_files.py asks before it reads a safetensors header."""

from __future__ import annotations

import re
from pathlib import Path

from desktop_app.errors import ModelError, printable
from desktop_app.models import model_folder

PICKLED_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")
LFS_MAGIC = b"version https://git-lfs.github.com/spec/"

CONVERT_HINT = ("convert it to .safetensors, for example with the Hugging Face \"safetensors/convert\" Space, or "
                "in Python with torch.load(path, map_location=\"cpu\", weights_only=True) (which refuses code) "
                "followed by safetensors.torch.save_file")


def _shown(path: Path) -> str:
    return printable(Path(path).name, 200)


def refuse_foreign(path: Path, head: bytes, size: int) -> None:
    """ModelError for an empty file, a Git-LFS pointer, a pickle or a zip archive, whatever its name."""
    if size == 0:
        raise ModelError(f"{_shown(path)} is an empty file (0 bytes): an interrupted download or copy? "
                         "Download or copy it again.")
    if head.startswith(LFS_MAGIC):
        raise ModelError(_lfs_message(path, size))
    pickled = head[:1] == b"\x80" and len(head) > 1 and 2 <= head[1] <= 5
    zipped = head[:4] in (b"PK\x03\x04", b"PK\x05\x06")
    if not (pickled or zipped):
        return
    what = "a Python pickle" if pickled else "a PyTorch zip archive (a pickle inside a zip)"
    if path.suffix.lower() in PICKLED_SUFFIXES:
        raise ModelError(f"{_shown(path)} is a PyTorch checkpoint ({what}). Pickles can run code when loaded, so "
                         f"this app opens only .safetensors files: {CONVERT_HINT}.")
    raise ModelError(f"{_shown(path)} is not a safetensors file: it is {what}; pickles can run code when loaded, "
                     "so this app does not open them.")


def _lfs_message(path: Path, size: int) -> str:
    try:
        with model_folder.open_regular(path) as handle:
            text = handle.read(1024).decode("utf-8", errors="replace")  # a pointer is ~130 bytes
    except (OSError, ModelError):
        text = ""
    real = re.search(r"^size (\d+)", text, re.MULTILINE)
    real_size = f" (the model is {int(real.group(1)):,} bytes)" if real else ""
    return (f"{_shown(path)} is a Git-LFS pointer of {size:,} bytes, not the model{real_size}. Fetch the real "
            "file with `git lfs pull` in the repository it came from, or download the file itself.")

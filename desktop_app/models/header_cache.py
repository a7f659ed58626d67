"""Each model file's header read once per process while the file stays the same: the one cache behind the
readers of safetensors headers (models/model_files.read_header, and through it the LoRA readers) and GGUF
metadata (models/gguf_files.read_shapes).

One load of a single transformer file used to read its header four times (the components check, the memory
plan twice, the loader), and one LoRA four times (the safety check, its info, the family check, Flux's layout
check); a large file's header is megabytes of JSON. Here a reader's answer is kept per (kind, absolute path) with
the file's stamp (size, modification and change times, inode): any write, replacement, rename over it or change
of permissions gives another stamp, and the file is read again. A ModelError (a damaged or refused file) is kept
too, and raised again as a new ModelError with the same message. At most ``LIMIT`` answers are kept, the least
recently used dropped first. Torch-free; safe to call from the window's thread and the workers' at once.
"""

from __future__ import annotations

import os
import stat
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Callable, TypeVar

from desktop_app.errors import ModelError

T = TypeVar("T")
LIMIT = 64  # answers kept: a LoRA folder's scan may read hundreds of headers; a load needs a handful

_answers: OrderedDict[tuple[str, str], tuple[tuple[int, ...], object]] = OrderedDict()
_lock = threading.Lock()


def cached(kind: str, path, read: Callable[[Path], T]) -> T:
    """``read(path)``'s answer, read once while the file at ``path`` is unchanged (``kind`` tells the readers of
    the same file apart). The answer is shared: callers must not change it (give out copies where they may).
    A path that cannot be stat'ed, or is not a regular file, is never kept: ``read`` says what is wrong."""
    path = Path(path)
    try:
        found = os.stat(path)
    except OSError:
        return read(path)
    if not stat.S_ISREG(found.st_mode):
        return read(path)
    key = (kind, os.path.abspath(path))
    stamp = (found.st_size, found.st_mtime_ns, found.st_ctime_ns, found.st_ino, found.st_dev)
    with _lock:
        held = _answers.get(key)
        if held is not None and held[0] == stamp:
            _answers.move_to_end(key)
            answer = held[1]
        else:
            held = None
    if held is None:
        try:
            answer = read(path)
        except ModelError as exc:
            answer = exc
        with _lock:
            _answers[key] = (stamp, answer)
            _answers.move_to_end(key)
            while len(_answers) > LIMIT:
                _answers.popitem(last=False)
    if isinstance(answer, ModelError):
        raise ModelError(str(answer)) from None
    return answer


def clear() -> None:
    """Forget every answer (tests; a caller that knows files changed without a new stamp)."""
    with _lock:
        _answers.clear()

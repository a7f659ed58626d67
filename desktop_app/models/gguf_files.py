"""GGUF files (quantized transformers as city96's ComfyUI-GGUF and the llama.cpp tools write them), read without
torch: the tensor names and shapes that tell the family (``families.recognise``), from the file's own index.

The ``gguf`` package (llama.cpp's reader, numpy only) parses the file; it is imported here lazily, so a missing
package costs a clear message only when a .gguf file is opened. GGUF stores each shape innermost first (ggml's
order): it is reversed here into torch's. The content decides: a GGUF file under another name is refused, because
diffusers picks its reader by the name.
"""

from __future__ import annotations

from pathlib import Path

from desktop_app.errors import ModelError, printable
from desktop_app.models import header_cache

MAGIC = b"GGUF"
SUFFIX = ".gguf"


def is_gguf(head: bytes) -> bool:
    return head[:4] == MAGIC


def read_shapes(path: Path, head: bytes) -> dict[str, list[int]]:
    """{tensor name: shape (torch order)} of the GGUF file at ``path`` (``head``: its first bytes), or a ModelError
    that names the problem (not GGUF, a GGUF file under another name, damaged, the reader not installed)."""
    shown = printable(Path(path).name, 200)
    if not is_gguf(head):
        raise ModelError(f"{shown} is not a GGUF file (it does not start with \"GGUF\"): damaged, or another kind "
                         "of file named .gguf.")
    if Path(path).suffix.lower() != SUFFIX:
        raise ModelError(f"{shown} is a GGUF file: give it the .gguf extension (the loader reads files by it).")
    try:
        from gguf import GGUFReader
    except ImportError:
        raise ModelError(f"{shown} is a GGUF file, and reading those needs the gguf package "
                         "(pip install gguf).") from None
    # read once while the file is unchanged (header_cache)
    return dict(header_cache.cached("gguf", path, lambda where: _read(where, GGUFReader)))


def _read(path: Path, GGUFReader) -> dict[str, list[int]]:  # noqa: N803 (the reader's class)
    try:
        reader = GGUFReader(str(path))
        return {str(t.name): [int(d) for d in reversed(list(t.shape))] for t in reader.tensors}
    except (ValueError, KeyError, IndexError, OSError, TypeError, OverflowError) as exc:
        raise ModelError(f"{printable(Path(path).name, 200)} is a damaged or truncated GGUF file "
                         f"({printable(exc, 160)}): download or copy it again.") from None

"""Hostile model files against the real command line: deeply nested headers and configs, malformed headers
that the safetensors format forbids, named pipes, code-running .pth pickles, and names with control
characters. Each exits 0 or 2 in seconds with one line, and one bad file never breaks the rest of the library."""

from __future__ import annotations

import collections
import json
import os
import pickle
import struct
import sys
import zipfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "library"))
from crafted_files import ESRGAN, FAMILY_SHAPES, KOHYA_LORA, write_safetensors  # noqa: E402


def raw_safetensors(path: Path, header: bytes | dict, data: bytes = b"") -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)
    return path


def nested_file(path: Path, depth: int = 100_000) -> Path:
    return raw_safetensors(path, b'{"a": ' + b"[" * depth + b"]" * depth + b"}")


def u8(begin: int, end: int, shape=None) -> dict:
    return {"dtype": "U8", "shape": [end - begin] if shape is None else shape, "data_offsets": [begin, end]}


MALFORMED = {  # header, data bytes, a word the refusal names
    "overlap": ({"a": u8(0, 4), "b": u8(2, 6)}, 6, "overlap"),
    "gap": ({"a": u8(0, 4), "b": u8(6, 8)}, 8, "belong to no tensor"),
    "trailing": ({"a": u8(0, 4)}, 9, "after its last tensor"),
    "Q99": ({"a": {"dtype": "Q99", "shape": [4], "data_offsets": [0, 4]}}, 4, "unknown dtype"),
    "shape 2^62": ({"a": u8(0, 4, [2**62])}, 4, "impossible shape"),
    "shape 2^60": ({"a": u8(0, 4, [2**60])}, 4, "needs 1,152,921,504,606,846,976 bytes"),
    "shape 2^62 x 2^62": ({"a": u8(0, 0, [2**62, 2**62, 0])}, 0, "impossible shape"),
    "bool shape": ({"a": u8(0, 1, [True])}, 1, "whole numbers"),
    "metadata not text": ({"__metadata__": {"steps": 5}, "a": u8(0, 4)}, 4, "__metadata__"),
    "duplicate key": (b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}, '
                      b'"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]}}', 1, "appears twice"),
    "NaN": (b'{"a": {"dtype": "U8", "shape": [NaN], "data_offsets": [0, 1]}}', 1, "NaN"),
    "nested": (b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 0, "nested deeper"),
    "nested, unclosed": (b'{"a": ' + b"[" * 100_000, 0, "unbalanced"),
    "only brackets": (b"[" * 100_000, 0, "not JSON"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_header_is_refused_on_add(run_cli, sandbox, case):
    home, work = sandbox
    header, size, word = MALFORMED[case]
    path = raw_safetensors(work / "bad.safetensors", header, b"\0" * size)
    result = run_cli("models", "add", path)
    assert result.code == 2 and word in result.lines[0], result.lines
    assert not (home / "library.json").exists()  # nothing registered


def test_one_damaged_file_never_breaks_the_library(run_cli, sandbox):
    home, work = sandbox
    folder = work / "models"
    write_safetensors(folder / "style.safetensors", KOHYA_LORA)
    write_safetensors(folder / "good.safetensors", FAMILY_SHAPES["sd1"])
    nested_file(folder / "nested.safetensors")
    broken = folder / "broken-diffusers"
    broken.mkdir()
    (broken / "model_index.json").write_text("[" * 100_000)
    added = run_cli("models", "add-folder", folder)
    assert added.code == 0 and "2 file(s) found" in added.stdout
    assert "skipped" in added.stdout and "nested.safetensors" in added.stdout
    assert "model_index.json" in added.stdout

    listed = run_cli("models", "list")
    assert listed.code == 0
    assert "style" in listed.stdout and "good" in listed.stdout
    assert "nested.safetensors" in listed.stdout and "nested deeper" in listed.stdout  # named, with the reason
    names = {e["name"] for e in json.loads(run_cli("models", "list", "--json").stdout)}
    assert {"style", "good"} <= names and "nested" not in names

    for args in (["--model", "nested"], ["--lora", "nested"], ["--model", "broken-diffusers"]):
        result = run_cli("generate", "a cat", *args, "--out", "x.png", "--steps", "1")
        assert result.code == 2 and "unusable" in result.lines[0], result.lines
    assert not (work / "x.png").exists()


def test_a_nested_model_index_is_refused_on_add(run_cli, sandbox):
    home, work = sandbox
    folder = work / "model"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"a": ' * 100_000)
    result = run_cli("models", "add", folder)
    assert result.code == 2 and "model_index.json" in result.lines[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are a POSIX thing")
def test_a_named_pipe_is_never_opened(run_cli, sandbox):
    home, work = sandbox
    os.mkfifo(work / "x.safetensors")
    result = run_cli("models", "add", work / "x.safetensors", timeout=30)
    assert result.code == 2 and "named pipe" in result.lines[0]
    folder = work / "pipes"
    (folder / "unet").mkdir(parents=True)
    os.mkfifo(folder / "y.safetensors")
    write_safetensors(folder / "style.safetensors", KOHYA_LORA)
    assert run_cli("models", "add-folder", folder, timeout=30).code == 0
    listed = run_cli("models", "list", timeout=30)
    assert listed.code == 0 and "style" in listed.stdout


class RunsCode:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def torch_zip(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:  # the layout torch.save writes
        archive.writestr("archive/data.pkl", payload)
        archive.writestr("archive/version", "3\n")
    return path


def test_code_running_pth_upscalers_are_listed_as_unusable(run_cli, sandbox):
    home, work = sandbox
    root = work / "webui" / "models" / "ESRGAN"
    write_safetensors(root / "4x-good.safetensors", ESRGAN)
    torch_zip(root / "4x-evil.pth", pickle.dumps({"w": RunsCode()}, protocol=2))  # GLOBAL posix system
    torch_zip(root / "4x-evil4.pth", pickle.dumps({"w": RunsCode()}, protocol=4))  # STACK_GLOBAL
    (root / "4x-plain-evil.pth").write_bytes(pickle.dumps(RunsCode(), protocol=2))
    torch_zip(root / "4x-safe.pth", pickle.dumps(collections.OrderedDict(a=1), protocol=4))
    result = run_cli("models", "add-folder", work / "webui")
    assert result.code == 0
    skipped = [line for line in result.stdout.splitlines() if "skipped" in line]
    assert len(skipped) == 3 and all("holds more than weights" in line and "system" in line for line in skipped)
    upscalers = {e["name"] for e in json.loads(run_cli("models", "list", "--json", "--kind", "upscaler").stdout)}
    assert {"4x-good", "4x-safe"} <= upscalers and not any("evil" in name for name in upscalers)


@pytest.mark.parametrize("name", ["two\nlines", "\x1b[31mred", "tab\there", "a/b", "-x", "default"])
def test_unsafe_library_names_are_refused(run_cli, sandbox, name):
    home, work = sandbox
    path = write_safetensors(work / "m.safetensors", KOHYA_LORA)
    result = run_cli("models", "add", path, "--name", name)
    assert result.code == 2 and "\x1b" not in result.stderr
    assert not (home / "library.json").exists()


def test_a_file_name_with_escapes_is_listed_escaped(run_cli, sandbox):
    home, work = sandbox
    folder = work / "loras"
    write_safetensors(folder / "evil\x1b[2J\nname.safetensors", KOHYA_LORA)
    added = run_cli("models", "add-folder", folder)
    assert added.code == 0 and "\x1b" not in added.stdout
    listed = run_cli("models", "list")
    assert listed.code == 0 and "\x1b" not in listed.stdout and "\\x1b[2J\\nname" in listed.stdout
    refused = run_cli("models", "add", folder / "evil\x1b[2J\nname.safetensors")  # the stem is no safe name
    assert refused.code == 2 and "\x1b" not in refused.stderr and "--name" in refused.lines[0]

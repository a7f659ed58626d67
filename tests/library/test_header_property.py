"""Property tests for the hand-written safetensors header check (``model_files.check_header``).

Whatever the bytes (random, JSON of any shape, nested a million deep, megabytes long), the check answers in
bounded time with the header or a ``ModelError``, never another exception. And on headers built like real
ones and then damaged, it agrees with the safetensors library itself: what the library refuses is refused
(the check is stricter only where the format says so: a key given twice).
"""

from __future__ import annotations

import json
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from desktop_app.models import model_files
from desktop_app.errors import ModelError

safetensors = pytest.importorskip("safetensors")

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BOUND_S = 10.0  # far above what each case takes (milliseconds); a quadratic or recursive path would blow it


def check(raw: bytes, data_size: int):
    """check_header's answer: the header, or the ModelError message; anything else fails the test."""
    started = time.perf_counter()
    try:
        result = model_files.check_header(raw, data_size, "x.safetensors")
    except ModelError as exc:
        result = str(exc)
        assert "\n" not in result and result.startswith("x.safetensors")
    assert time.perf_counter() - started < BOUND_S
    return result


@FAST
@given(st.binary(max_size=4096), st.integers(0, 2**64))
def test_random_bytes_give_a_header_or_a_model_error(raw, data_size):
    check(raw, data_size)


@FAST
@given(st.binary(min_size=1, max_size=64), st.integers(1, 1 << 20))
def test_megabytes_of_repeated_bytes(chunk, repeat):
    check(b"{" + (chunk * repeat)[:3_000_000], 0)


@FAST
@given(st.integers(1, 2_000_000), st.sampled_from(["[", "{\"a\":", "[{\"a\":"]), st.booleans())
def test_nesting_of_any_depth_is_refused_without_recursion(depth, opener, closed):
    text = "{\"w\":" + opener * (depth // len(opener) + 1)
    if closed:
        text += "0" + "".join("]" if c == "[" else "}" for c in reversed(opener)) * (depth // len(opener) + 1)
    assert isinstance(check(text.encode(), 0), str)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=40)


@FAST
@given(st.dictionaries(st.text(max_size=20), json_values, max_size=8), st.integers(0, 10_000))
def test_any_json_object_gives_a_header_or_a_model_error(header, data_size):
    check(json.dumps(header).encode(), data_size)


# ---- agreement with the safetensors library ---------------------------------------------------------------

DTYPES = sorted(model_files.DTYPE_BITS)


@st.composite
def damaged_files(draw):
    """A well-formed file (contiguous tensors of known dtypes), then maybe one damage of the kind found in
    the wild: a wrong offset, a gap, an overlap, an unknown dtype, a huge or negative or float dimension,
    trailing or missing bytes, metadata that is not text."""
    count = draw(st.integers(0, 4))
    header, position = {}, 0
    for index in range(count):
        dtype = draw(st.sampled_from(DTYPES))
        shape = draw(st.lists(st.integers(0, 4), max_size=3))
        nbits = model_files.DTYPE_BITS[dtype]
        for dim in shape:
            nbits *= dim
        if nbits % 8:
            shape = [*shape, 8]
            nbits *= 8
        header[f"t{index}"] = {"dtype": dtype, "shape": shape, "data_offsets": [position, position + nbits // 8]}
        position += nbits // 8
    data_size = position
    damage = draw(st.sampled_from(["none", "offset", "dtype", "shape", "size", "metadata", "swap"]))
    names = list(header)
    if damage == "offset" and names:
        entry = header[draw(st.sampled_from(names))]
        entry["data_offsets"][draw(st.integers(0, 1))] += draw(st.sampled_from([-1, 1, 2**62, -(2**10)]))
    elif damage == "dtype" and names:
        header[draw(st.sampled_from(names))]["dtype"] = draw(st.sampled_from(["Q99", "f32", "", "E8M0"]))
    elif damage == "shape" and names:
        header[draw(st.sampled_from(names))]["shape"] = draw(st.sampled_from(
            [[2**62], [2**62, 0], [-1], [1.0], [2**64], [2**40, 2**40], ["1"]]))
    elif damage == "size":
        data_size += draw(st.sampled_from([-1, 1, 8]))
    elif damage == "metadata":
        header["__metadata__"] = draw(st.sampled_from([{"a": "b"}, {"a": 1}, ["a"], None, "text", {"a": None}]))
    elif damage == "swap" and len(names) > 1:
        first, second = header[names[0]], header[names[1]]
        first["data_offsets"], second["data_offsets"] = second["data_offsets"], first["data_offsets"]
    data_size = max(data_size, 0)
    return json.dumps(header).encode(), data_size


def library_accepts(raw: bytes, data_size: int) -> bool:
    try:
        safetensors.deserialize(struct.pack("<Q", len(raw)) + raw + b"\0" * data_size)
    except Exception:  # noqa: BLE001 - any refusal by the library
        return False
    return True


@settings(max_examples=150, deadline=None)
@given(damaged_files())
def test_the_check_agrees_with_the_safetensors_library(case):
    raw, data_size = case
    ours = check(raw, data_size)
    assert isinstance(ours, dict) == library_accepts(raw, data_size), (raw, data_size, ours)


def test_a_key_given_twice_is_refused_though_the_library_keeps_the_last():
    entry = '{"dtype": "U8", "shape": [2], "data_offsets": [0, 2]}'
    raw = f'{{"w": {entry}, "w": {entry}}}'.encode()
    assert "appears twice" in check(raw, 2)


def test_a_large_valid_header_is_read_in_time():
    tensors = {f"layer.{i}.weight": {"dtype": "F16", "shape": [2], "data_offsets": [4 * i, 4 * i + 4]}
               for i in range(50_000)}  # a ~4 MB header, as big checkpoints have
    raw = json.dumps({"__metadata__": {"note": "x" * 1_000_000}, **tensors}).encode()
    header = check(raw, 200_000)
    assert isinstance(header, dict) and len(header) == 50_000

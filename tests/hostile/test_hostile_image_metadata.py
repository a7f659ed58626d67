"""``desktop-app info`` on hostile images: each crafted here, each run as a user would, each bounded.

Every case: exit 0 or 2, within seconds, at most one line on stderr (no traceback, no PIL warning), nothing
written outside the user folder (the rules ``run_cli`` asserts)."""

from __future__ import annotations

import io
import json
import os

import pytest
from image_metadata_files import (A1111_TEXT, comfyui_png, fooocus_png, itxt_bomb, png_with_text, raw_png,
                                  stealth_png, text_chunk, ztxt_bomb)
from PIL import Image

QUICK = 20  # seconds: every case takes about one (the quadratic regex took hours)


def test_a_settings_line_that_made_the_old_regex_quadratic(run_cli, sandbox):
    _, work = sandbox
    path = png_with_text(work / "hang.png", {"parameters": "a cat\nSteps: 1, " + "a " * 100000})
    done = run_cli("info", path, timeout=QUICK)
    assert done.code == 0 and "Steps: 1" in done.stdout and "Prompt: a cat" in done.stdout


def test_parameters_longer_than_any_recipe_are_refused(run_cli, sandbox):
    _, work = sandbox
    path = png_with_text(work / "long.png", {"parameters": "Steps: 1, " + "b:" * 600_000},
                         compressed=("parameters",))
    done = run_cli("info", path, timeout=QUICK)
    assert done.code == 2 and "characters long" in done.stderr


@pytest.mark.parametrize("recipe", ["[" * 100_000, "{\"a\":" * 50_000, json.dumps({"prompt": 5, "steps": [1]}),
                                    json.dumps({"prompt": "x", "loras": [{"name": "a", "weight": "heavy"}]}),
                                    json.dumps([1, 2, 3]), "not json"])
def test_a_damaged_recipe_chunk_is_bad_input(run_cli, sandbox, recipe):
    _, work = sandbox
    path = png_with_text(work / "damaged.png", {"recipe": recipe})
    done = run_cli("info", path, "--json", codes=(2,), timeout=QUICK)
    assert "'recipe' chunk is damaged" in done.stderr


def test_a_damaged_recipe_chunk_beside_parameters_reads_the_parameters(run_cli, sandbox):
    _, work = sandbox
    path = png_with_text(work / "mixed.png", {"recipe": "[" * 100_000, "parameters": A1111_TEXT})
    done = run_cli("info", path, codes=(0,), timeout=QUICK)
    assert "Prompt: a lighthouse at dusk" in done.stdout


def test_a_png_declaring_a_huge_size_is_never_decoded(run_cli, sandbox):
    _, work = sandbox
    bomb = raw_png(work / "bomb.png", 100_000, 100_000, color_type=6)
    done = run_cli("info", bomb, codes=(2,), timeout=QUICK)
    assert "no recipe" in done.stderr and "Warning" not in done.stderr
    # its text after the pixel data is still read (PIL would decode 40 GB of pixels to reach it)
    with_text = raw_png(work / "bomb-text.png", 100_000, 100_000, after=[text_chunk("parameters", A1111_TEXT)])
    done = run_cli("info", with_text, codes=(0,), timeout=QUICK)
    assert "Prompt: a lighthouse at dusk" in done.stdout


@pytest.mark.parametrize("bomb", [ztxt_bomb, itxt_bomb])
def test_a_compressed_text_bomb_is_refused_without_expanding_it(run_cli, sandbox, bomb):
    _, work = sandbox
    path = raw_png(work / "ztxt.png", 8, 8, chunks=[bomb("parameters", 64)])
    done = run_cli("info", path, codes=(2,), timeout=QUICK)
    assert "decompression bomb" in done.stderr


@pytest.mark.parametrize("size", [(12_000, 12_000), (60_000, 60_000)])  # over PIL's warning, over its error
def test_a_jpeg_declaring_a_huge_size_gives_one_line(run_cli, sandbox, size):
    _, work = sandbox
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, "JPEG")
    data = bytearray(buffer.getvalue())
    start = data.find(b"\xff\xc0")
    data[start + 5:start + 9] = size[1].to_bytes(2, "big") + size[0].to_bytes(2, "big")
    path = work / "bomb.jpg"
    path.write_bytes(bytes(data))
    done = run_cli("info", path, codes=(2,), timeout=QUICK)
    assert "Warning" not in done.stderr
    assert ("too large to open safely" if size[0] > 20_000 else "no recipe") in done.stderr


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes are POSIX")
def test_a_named_pipe_called_png_is_refused_not_waited_on(run_cli, sandbox):
    _, work = sandbox
    os.mkfifo(work / "x.png")
    done = run_cli("info", "x.png", codes=(2,), timeout=QUICK)
    assert "not a regular file" in done.stderr


@pytest.mark.parametrize("content", [b"", b"\x89PNG\r\n\x1a\n", b"\x89PNG\r\n\x1a\n\xff\xff\xff\xf0tEXtxx",
                                     b"\x89PNG\r\n\x1a\n" + os.urandom(3000), os.urandom(3000),
                                     b"\xff\xd8\xff\xe1\xff\xffExif\0\0" + b"\0" * 100])
def test_damaged_and_random_files_give_one_line(run_cli, sandbox, content):
    _, work = sandbox
    path = work / "broken.png"
    path.write_bytes(content)
    run_cli("info", path, codes=(2,), timeout=QUICK)


def test_a_folder_and_a_missing_file(run_cli, sandbox):
    _, work = sandbox
    (work / "folder.png").mkdir()
    assert "folder" in run_cli("info", "folder.png", codes=(2,)).stderr
    assert "no such file" in run_cli("info", "missing.png", codes=(2,)).stderr


def test_terminal_escapes_in_a_prompt_are_printed_escaped(run_cli, sandbox):
    _, work = sandbox
    path = png_with_text(work / "esc.png", {"parameters": "a \x1b[2J\x1b]0;pwned\x07cat\nSteps: 2, Seed: 1"})
    done = run_cli("info", path, codes=(0,), timeout=QUICK)
    assert "\x1b" not in done.stdout and "\x07" not in done.stdout and "\\x1b" in done.stdout


def test_other_tools_images_through_the_command_line(run_cli, sandbox):
    _, work = sandbox
    fooocus = run_cli("info", fooocus_png(work / "fooocus.png"), codes=(0,), timeout=QUICK)
    assert "Prompt: a red fox in the snow\n" in fooocus.stdout and "Recipe: Fooocus JSON" in fooocus.stdout
    comfy = run_cli("info", comfyui_png(work / "comfy.png"), "--json", codes=(0,), timeout=QUICK)
    found = json.loads(comfy.stdout)
    assert found["source"] == "comfyui" and found["request"]["steps"] == 20
    stealth = run_cli("info", stealth_png(work / "stealth.png", A1111_TEXT), codes=(0,), timeout=QUICK)
    assert "Prompt: a lighthouse at dusk" in stealth.stdout


def test_the_parser_is_fast_on_the_reported_input():
    import time

    from desktop_app.studio import png_recipe

    start = time.perf_counter()
    png_recipe.parse_parameters("Steps: 1, " + "a " * 100000)
    assert time.perf_counter() - start < 5, "linear: well under a second here (the old regex: hours)"

"""Dropping hostile or foreign images onto the window: the form fills from what other tools wrote, and a damaged
recipe is a message, never a frozen or broken window (the drop handler reads on the UI thread)."""

from __future__ import annotations

import json
import time

from image_metadata_files import comfyui_png, novelai_png, png_with_text, raw_png, ztxt_bomb


def test_a_comfyui_image_fills_the_form(qtbot, open_fake_window, drop, tmp_path):
    window = open_fake_window()
    drop(window, comfyui_png(tmp_path / "comfy.png"))
    form = window.form
    assert form.prompt_edit.toPlainText() == "beautiful scenery nature glass bottle landscape"
    assert form.negative_edit.toPlainText() == "text, watermark"
    assert form.steps_spin.value() == 20 and form.sampler_combo.currentText() == "Euler"


def test_a_novelai_image_fills_the_form(qtbot, open_fake_window, drop, tmp_path):
    window = open_fake_window()
    drop(window, novelai_png(tmp_path / "nai.png"))
    assert window.form.prompt_edit.toPlainText() == "masterpiece, a girl reading in a library"
    assert window.form.steps_spin.value() == 28


def test_damaged_recipes_are_a_message_and_the_window_goes_on(qtbot, open_fake_window, drop, tmp_path):
    window = open_fake_window()
    window.form.prompt_edit.setPlainText("unchanged")
    files = [png_with_text(tmp_path / "nested.png", {"recipe": "[" * 100_000}),
             png_with_text(tmp_path / "types.png", {"recipe": json.dumps({"prompt": 5, "steps": [1]})}),
             raw_png(tmp_path / "bomb.png", 100_000, 100_000, color_type=6),
             raw_png(tmp_path / "ztxt.png", 8, 8, chunks=[ztxt_bomb("parameters", 32)])]
    for path in files:
        window.message_area.hide()
        drop(window, path)
        assert window.message_area.isVisible() and "no recipe" in window.message_area.text.text(), path.name
        assert window.form.prompt_edit.toPlainText() == "unchanged"


def test_the_input_that_hung_the_parser_is_read_at_once(qtbot, open_fake_window, drop, tmp_path):
    window = open_fake_window()
    path = png_with_text(tmp_path / "hang.png", {"parameters": "a cat\nSteps: 3, " + "a " * 100_000})
    start = time.perf_counter()
    drop(window, path)
    assert time.perf_counter() - start < 10, "the old regex took hours on the UI thread"
    assert window.form.prompt_edit.toPlainText() == "a cat" and window.form.steps_spin.value() == 3

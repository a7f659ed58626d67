"""The denoising timeline on the real window: frames kept per step, scrubbing, a new run resets, export."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from PIL import Image
from PySide6.QtWidgets import QFileDialog

from desktop_app.engine.events import Progress


def generate(qtbot, window, steps: int, prompt="a red apple"):
    window.form.prompt_edit.setPlainText(prompt)
    window.form.steps_spin.setValue(steps)
    window.form.random_check.setChecked(False)
    window.form.seed_spin.setValue(5)
    with qtbot.waitSignal(window.run_ended, timeout=20_000) as blocker:
        window.generate_button.click()
    assert blocker.args[0] == "finished"
    # the bar takes the final image from the same signal, just after the window
    qtbot.waitUntil(lambda: window.timeline_bar.timeline.finished, timeout=5_000)


def pixel(window) -> tuple[int, int, int]:
    colour = window.canvas.image().pixelColor(0, 0)
    return colour.red(), colour.green(), colour.blue()


def fake_shade(step: int, steps: int) -> tuple[int, int, int]:
    """The FakeEngine's preview colour for a step (tests/gui/conftest.py)."""
    value = int(255 * step / steps)
    return value, 64, 255 - value


def test_scrubbing_shows_the_earlier_frames_and_the_final_image_is_last(qtbot, open_fake_window):
    window = open_fake_window()
    bar = window.timeline_bar
    assert not bar.isVisible(), "no timeline before the first run"
    generate(qtbot, window, steps=5)
    assert bar.isVisible() and bar.frame_count() == 6, "one frame per step, then the final image"
    assert bar.slider.value() == 5 and bar.step_label.text() == "step 5 / 5 · final image"
    final = pixel(window)
    assert final == (200, 120, 40)  # the FakeEngine's result

    bar.show_frame(1)  # as a drag to the second notch
    assert bar.step_label.text() == "step 2 / 5"
    assert pixel(window) == fake_shade(2, 5)
    assert "step 2 / 5" in window.canvas._caption
    bar.slider.setValue(0)  # the keyboard or the mouse move it the same way
    assert pixel(window) == fake_shade(1, 5) and bar.step_label.text() == "step 1 / 5"
    bar.slider.setValue(5)
    assert pixel(window) == final

    generate(qtbot, window, steps=3, prompt="again")
    assert bar.frame_count() == 4, "a new generation starts a new timeline"
    assert bar.step_label.text() == "step 3 / 3 · final image"


def test_only_steps_with_a_preview_become_frames(qtbot, open_fake_window, make_engine):
    class PacedEngine(make_engine):
        """Like a slow device under the preview pacer: only every second step carries a preview."""

        def run(self, request, emit, cancel):
            def paced(event):
                if isinstance(event, Progress) and event.step % 2 == 0:
                    event = dataclasses.replace(event, preview=None)
                emit(event)

            return super().run(request, paced, cancel)

    window = open_fake_window(PacedEngine())
    generate(qtbot, window, steps=6)
    frames = window.timeline_bar.timeline.frames
    assert [f.step for f in frames] == [1, 3, 5, 6] and frames[-1].final


@pytest.mark.parametrize("suffix", [".webp", ".gif"])
def test_export_writes_an_animation_with_every_frame(qtbot, open_fake_window, monkeypatch, tmp_path, suffix):
    window = open_fake_window()
    generate(qtbot, window, steps=4)
    target = tmp_path / f"steps{suffix}"
    asked = []

    def dialog(parent, title, start, filters):
        asked.append(start)
        return str(target), filters.split(";;")[0]

    monkeypatch.setattr(QFileDialog, "getSaveFileName", dialog)
    assert window.export_timeline_action.isEnabled()
    window.timeline_bar.export_button.click()
    with Image.open(target) as image:
        assert image.is_animated and image.n_frames == window.timeline_bar.frame_count() == 5
        assert image.format == suffix[1:].upper()
        image.seek(image.n_frames - 1)
        image.load()
        assert image.convert("RGB").getpixel((0, 0)) == pytest.approx((200, 120, 40), abs=8)
    assert asked and Path(asked[0]).name == "timeline-5.webp"
    assert str(target) in window.statusBar().currentMessage() and "5 frames" in window.statusBar().currentMessage()


def test_export_to_a_bad_name_says_what_is_wrong(qtbot, open_fake_window, monkeypatch, tmp_path):
    window = open_fake_window()
    generate(qtbot, window, steps=2)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a: (str(tmp_path / "steps.png"), ""))
    window.export_timeline_action.trigger()
    assert window.message_area.isVisible()
    assert "webp or .gif" in window.message_area.text.text()
    assert not (tmp_path / "steps.png").exists()
    monkeypatch.setattr(QFileDialog, "getSaveFileName",
                        lambda *a: (str(tmp_path / "steps"), "Animated GIF (*.gif)"))
    window.export_timeline_action.trigger()
    assert (tmp_path / "steps.gif").is_file(), "no extension: the chosen type's"


def test_a_cancelled_run_keeps_its_frames_to_scrub(qtbot, open_fake_window, make_engine):
    engine = make_engine(delay=0.05)
    window = open_fake_window(engine)
    bar = window.timeline_bar
    window.form.prompt_edit.setPlainText("stop me")
    window.form.steps_spin.setValue(40)
    window.generate_button.click()
    qtbot.waitUntil(lambda: bar.frame_count() >= 3, timeout=20_000)
    assert not bar.slider.isEnabled() and not window.export_timeline_action.isEnabled(), "no scrubbing mid-run"
    with qtbot.waitSignal(window.run_ended, timeout=20_000) as blocker:
        window.cancel_button.click()
    assert blocker.args[0] == "cancelled"
    qtbot.waitUntil(lambda: bar.slider.isEnabled(), timeout=5_000)
    kept = bar.frame_count()
    assert 3 <= kept < 40 and not bar.timeline.finished
    bar.show_frame(0)
    assert pixel(window) == fake_shade(1, 40) and bar.step_label.text() == "step 1 / 40"

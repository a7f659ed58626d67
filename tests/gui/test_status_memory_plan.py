"""The memory plan in the status bar: while the model loads, and on the device label after the run."""

from __future__ import annotations

import dataclasses

from PySide6.QtCore import Qt

from desktop_app.engine.events import StageStarted

OFFLOAD_LINE = "memory plan: model offload (31.5 GB of weights, the largest part (22.2 GB) on the device: " \
               "needs about 28.6 GB, 30.0 GB free)"


def offloading_engine(make_engine, plan: str, notices: tuple = ()):
    """A FakeEngine whose runs load with ``plan`` (told in the "load" stage, as the engine does on CUDA) and
    record it in their recipe with ``notices``."""

    class PlannedEngine(make_engine):
        def run(self, request, emit, cancel):
            def with_plan(event):
                if isinstance(event, StageStarted) and event.stage == "load":
                    event = StageStarted("load", f"fake on cuda:0 (bfloat16); {OFFLOAD_LINE}")
                elif hasattr(event, "recipe"):
                    recipe = dataclasses.replace(event.recipe, memory_plan=plan, device="cuda:0",
                                                 dtype="bfloat16", notices=notices)
                    event = dataclasses.replace(event, recipe=recipe)
                    self.last = event
                emit(event)

            super().run(request, with_plan, cancel)
            return self.last

    return PlannedEngine()


def generate(qtbot, window):
    messages = []
    window.statusBar().messageChanged.connect(messages.append)
    window.form.prompt_edit.setFocus()
    qtbot.keyClicks(window.form.prompt_edit, "a cat")
    with qtbot.waitSignal(window.run_ended, timeout=30_000) as blocker:
        qtbot.keyClick(window.form.prompt_edit, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert blocker.args == ["finished"]
    return messages


def test_an_offloaded_run_tells_its_plan_in_the_status_bar(qtbot, open_fake_window, make_engine):
    window = open_fake_window(offloading_engine(make_engine, "model offload", (OFFLOAD_LINE,)))
    messages = generate(qtbot, window)
    assert any("memory plan: model offload" in message for message in messages), messages  # while loading
    assert window.device_label.text() == "Device: cuda:0 (bfloat16) · model offload"
    assert window.device_label.toolTip() == OFFLOAD_LINE
    assert OFFLOAD_LINE in window.statusBar().currentMessage()  # with the run's other notices


def test_all_on_the_device_shows_just_the_device(qtbot, open_fake_window, make_engine):
    window = open_fake_window(offloading_engine(make_engine, "all on device"))
    generate(qtbot, window)
    assert window.device_label.text() == "Device: cuda:0 (bfloat16)"
    assert window.device_label.toolTip() == ""


def test_a_recipe_from_before_the_plan_shows_the_device(qtbot, open_fake_window, make_engine):
    window = open_fake_window(offloading_engine(make_engine, None))
    generate(qtbot, window)
    assert window.device_label.text() == "Device: cuda:0 (bfloat16)"

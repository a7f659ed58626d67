"""The form's Weights (issue 16): auto / full / fp8 with a tooltip that says what each does; the choice goes with
each job to the worker, whose Engine gets ``set_weights`` before the run; it is kept with the last run and
comes back at the next start."""

from __future__ import annotations

import json

from PySide6.QtCore import Qt

from desktop_app.gui.weights_choice import WEIGHTS, wire_weights


def recording_engine(make_engine):
    class Recording(make_engine):
        def __init__(self):
            super().__init__()
            self.calls = []

        def set_weights(self, mode):
            self.calls.append(("set_weights", mode))

        def run(self, request, emit, cancel):
            self.calls.append(("run", request.prompt))
            return super().run(request, emit, cancel)

    return Recording()


def generate(qtbot, window, prompt: str):
    window.form.prompt_edit.setPlainText(prompt)
    with qtbot.waitSignal(window.run_ended, timeout=20_000) as ended:
        qtbot.mouseClick(window.generate_button, Qt.MouseButton.LeftButton)
    assert ended.args == ["finished"]


def open_wired(open_fake_window, engine):
    window = open_fake_window(engine)
    wire_weights(window.form, window.controller)  # what MainWindow._wire is to do (see the issue note)
    return window


def test_the_weights_choice_reaches_the_engine_before_each_run(qtbot, open_fake_window, make_engine):
    engine = recording_engine(make_engine)
    window = open_wired(open_fake_window, engine)
    combo = window.form.weights_combo
    assert [combo.itemText(i) for i in range(combo.count())] == list(WEIGHTS) and combo.currentText() == "auto"
    tip = combo.toolTip()
    assert all(word in tip for word in ("auto", "fp8", "full", "half the memory"))
    generate(qtbot, window, "first")
    combo.setCurrentText("fp8")
    generate(qtbot, window, "second")
    combo.setCurrentText("full")
    generate(qtbot, window, "third")
    assert engine.calls == [("set_weights", "auto"), ("run", "first"), ("set_weights", "fp8"), ("run", "second"),
                            ("set_weights", "full"), ("run", "third")]


def test_the_weights_choice_comes_back_at_the_next_start(qtbot, open_fake_window, make_engine):
    from desktop_app import paths

    window = open_wired(open_fake_window, recording_engine(make_engine))
    window.form.weights_combo.setCurrentText("fp8")
    generate(qtbot, window, "kept")
    stored = json.loads(paths.settings_path().read_text())
    assert stored["last_request"]["weights"] == "fp8"
    window.close()
    engine = recording_engine(make_engine)
    again = open_wired(open_fake_window, engine)
    assert again.form.weights_combo.currentText() == "fp8"
    generate(qtbot, again, "after restart")
    assert engine.calls[0] == ("set_weights", "fp8")


def test_a_stored_weights_value_that_is_not_a_mode_is_skipped(qtbot):
    from desktop_app.gui.generation_form import GenerationForm

    form = GenerationForm()
    qtbot.addWidget(form)
    form.weights_combo.setCurrentText("full")
    assert "weights" in form.apply_request({"weights": "fp4"})
    assert form.weights_combo.currentText() == "full"

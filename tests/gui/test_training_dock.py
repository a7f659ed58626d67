"""The fine-tuning panel is a dock of the real window, with a View menu entry."""

from __future__ import annotations

from desktop_app.gui.main_window import MainWindow
from desktop_app.gui.training_panel import TrainingPanel


def test_the_window_has_the_fine_tune_dock(qtbot, make_engine):
    engine = make_engine()
    window = MainWindow(engine_factory=lambda device: engine)
    qtbot.addWidget(window)
    try:
        assert isinstance(window.training_panel, TrainingPanel)
        assert window.training_dock.widget() is window.training_panel
        view = next(a.menu() for a in window.menuBar().actions() if a.text() == "&View")
        assert view is window.menus.view_menu
        assert [a.text() for a in view.actions()] == ["&Gallery", "&Models", "&Explain…", "&Theme", "&Fine-tune"]
    finally:
        window.close()


def test_a_failed_training_is_told_by_its_kind(qtbot):
    """The training process's "failed" events carry a FailureKind value; out of memory and a full disk get a
    hint a person can act on, the others their own message."""
    panel = TrainingPanel()
    qtbot.addWidget(panel)
    panel.handle_event({"event": "failed", "kind": "out_of_memory", "message": "OutOfMemoryError: CUDA"})
    assert panel.state == "failed" and panel.failure_kind == "out_of_memory"
    assert panel.status.text() == "OutOfMemoryError: CUDA Out of memory: try a lower resolution or batch size."
    panel.handle_event({"event": "failed", "kind": "disk", "message": "No space left on device."})
    assert "Free some disk space; Resume continues" in panel.status.text()
    panel.handle_event({"event": "failed", "kind": "bad_input", "message": "token: must be one word"})
    assert panel.status.text() == "token: must be one word" and panel.failure_kind == "bad_input"

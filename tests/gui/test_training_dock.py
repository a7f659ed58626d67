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
        assert "&Fine-tune" in [a.text() for a in view.actions()]
    finally:
        window.close()

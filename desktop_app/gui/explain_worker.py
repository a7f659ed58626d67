"""The explain job's worker (issue 18): ``engine/explain.explain`` for the form's request, in its own thread.

It is a GenerationWorker with another job (as UpscaleWorker is): the same signals, the same one catch that ends
every exception as ``failed(kind, message)`` (a FailureKind value and one readable line), ``cancelled`` for a
cancel. ``stage`` and ``progress`` carry explain's ``emit`` events. ``finished`` carries an ``Explained``: the
plain data and the report's sections (``studio/explain_report.build_sections``: titles, captions, figures),
drawn here so that the window never waits on PIL. It has its own Engine (the model stays loaded for the next
explain) and imports the engine only when a job runs: the window shows before torch loads.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from desktop_app.gui.workers import GenerationWorker


@dataclass(frozen=True)
class Explained:
    data: dict  # what explain() returned
    sections: list  # studio/explain_report.Section, in order


class ExplainWorker(GenerationWorker):
    """``submit(request)`` runs ``explain(request, engine, emit, cancel=...)``; ``explain``: another function
    with that signature (tests use a quick fake; the default is the engine's). The model is unloaded after each
    explain (the window's generation worker keeps its own loaded)."""

    def __init__(self, device: str = "auto", engine_factory: Callable[[str], object] | None = None,
                 log_dir: Path | None = None, explain: Callable | None = None):
        super().__init__(device=device, engine_factory=engine_factory, log_dir=log_dir)
        self._explain = explain
        self.other_prompts: list[str] = []  # set by the view before each submit: texts section 2 matches too
        self.compare = None  # set by the view: (x, y) compare_grid Axes for section 6's grid, or None

    def _execute(self, engine, request, cancel: threading.Event):
        from desktop_app.models.resolve import resolve_names  # torch-free
        from desktop_app.studio.explain_report import build_sections  # torch-free

        explain = self._explain
        if explain is None:
            from desktop_app.engine.explain import explain  # lazy: torch

        try:
            data = explain(resolve_names(request), engine, self._on_event, cancel=cancel,
                           other_prompts=list(self.other_prompts), compare=self.compare)
        finally:
            # the generation worker holds its own copy of the model: this one's is freed after each explain, so
            # the memory plan of the next generation sees the device's memory whole
            unload = getattr(engine, "unload", None)
            if unload is not None:
                unload()
        if cancel.is_set():  # cancelled after its last check: the person asked to stop, so nothing is shown
            return None
        self.stage.emit("explain", "drawing the figures")
        return Explained(data, build_sections(data))

"""The error a training run stops with (no torch here, so the process and the CLI can catch it cheaply)."""

from __future__ import annotations

from desktop_app.errors import EngineError


class TrainingError(EngineError):
    """Training stopped: ``kind`` is "nan" or "disk"; the message says why and what was kept."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind

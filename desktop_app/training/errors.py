"""The error a training run stops with (no torch here, so the process and the CLI can catch it cheaply)."""

from __future__ import annotations

from desktop_app.errors import EngineError, FailureKind

# why a run stops -> the FailureKind its "failed" event and exit code carry
REASONS = {"disk": FailureKind.DISK, "nan": FailureKind.ENGINE}


class TrainingError(EngineError):
    """Training stopped: ``reason`` is "nan" (the loss diverged) or "disk" (no room for checkpoints); ``kind``
    the FailureKind for it. The message says why and what was kept."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.kind = REASONS.get(reason, FailureKind.ENGINE)

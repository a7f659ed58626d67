"""Errors the engine raises on purpose. Each carries a message a user can read."""


class EngineError(Exception):
    """Base class: anything that should reach the user as a readable message."""


class RequestError(EngineError, ValueError):
    """A request field has a bad value. ``field`` names it; the message gives the allowed values."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field


class ModelError(EngineError):
    """A model cannot be found, is not a supported format, or its files are damaged."""


class CancelledError(EngineError):
    """The user cancelled the job."""


class OutOfMemory(EngineError):
    """The device ran out of memory even in the lightest mode (see memory.py); the message says what was
    tried."""

"""Exceptions with messages meant to be shown to a user as a single line."""

from __future__ import annotations


class MGDLError(Exception):
    """Base class of every error mgdl_fast raises on purpose."""


class InputError(MGDLError, ValueError):
    """Bad user input: a file, an image, a tensor, a configuration value."""


class BackendUnavailableError(MGDLError, RuntimeError):
    """A backend cannot serve a request. ``reasons`` holds every reason; the message joins
    them on one line."""

    def __init__(self, message: str, reasons: list[str] | tuple[str, ...] = ()):
        super().__init__(message)
        self.reasons = list(reasons)


class DivergenceError(MGDLError, FloatingPointError):
    """A grade's training loss became NaN or infinite."""

    def __init__(self, grade: int, epoch: int, loss: float):
        super().__init__(f"grade {grade} diverged: training loss is {loss} at epoch {epoch}")
        self.grade = grade
        self.epoch = epoch
        self.loss = loss

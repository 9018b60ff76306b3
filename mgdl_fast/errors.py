"""Exceptions with messages meant to be shown to a user as a single line."""


class MGDLError(Exception):
    """Base class of every error mgdl_fast raises on purpose."""


class InputError(MGDLError, ValueError):
    """Bad user input: a file, an image, a configuration value."""


class BackendUnavailableError(MGDLError, RuntimeError):
    """An explicitly requested backend cannot serve the call; the message lists every reason."""


class DivergenceError(MGDLError, FloatingPointError):
    """A grade's training loss became NaN or infinite."""

    def __init__(self, grade: int, epoch: int, loss: float):
        super().__init__(f"grade {grade} diverged: training loss is {loss} at epoch {epoch}")
        self.grade = grade
        self.epoch = epoch
        self.loss = loss

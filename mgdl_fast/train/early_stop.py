"""The papers' validation-smoothing early-stopping rule (PROTOCOL 2)."""

from __future__ import annotations


class ValidationSmoothing:
    """Every ``record_every * window`` epochs, append the mean of the last ``window`` recorded
    validation losses to a smoothed series; stop when two consecutive smoothed values differ by
    less than ``rel_tol`` relative to the earlier one.

    The authors' MGDL code checks at epochs with ``(epoch + 1) % period == 0``; their SGDL code
    at ``epoch % period == 0`` (so its first smoothed value is the single loss of epoch 0):
    ``check_at_start`` reproduces the latter.
    """

    def __init__(
        self, record_every: int, window: int, rel_tol: float, *, check_at_start: bool = False
    ):
        self.period = record_every * window
        self.window = window
        self.rel_tol = rel_tol
        self.check_at_start = check_at_start
        self.smoothed: list[float] = []
        self.last_rel_change: float | None = None

    def state_dict(self) -> dict:
        return {"smoothed": list(self.smoothed), "last_rel_change": self.last_rel_change}

    def load_state_dict(self, state: dict) -> None:
        self.smoothed = list(state["smoothed"])
        self.last_rel_change = state["last_rel_change"]

    def is_check_epoch(self, epoch: int) -> bool:
        return (epoch if self.check_at_start else epoch + 1) % self.period == 0

    def next_check_epoch(self, epoch: int) -> int:
        """The first check epoch >= ``epoch``."""
        shift = 0 if self.check_at_start else 1
        return -(-(epoch + shift) // self.period) * self.period - shift

    def should_stop(self, val_losses: list[float]) -> bool:
        """Add a smoothed point from the recorded losses; True when training should stop."""
        recent = val_losses[-self.window :]
        if not recent:
            # A task without a validation split: nothing to smooth, never stop early.
            return False
        self.smoothed.append(sum(recent) / len(recent))
        if len(self.smoothed) < 2:
            return False
        previous, current = self.smoothed[-2], self.smoothed[-1]
        self.last_rel_change = abs((previous - current) / previous)
        return self.last_rel_change < self.rel_tol

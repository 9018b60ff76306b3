"""A time budget for a fit: each grade's epochs chosen from its own measured speed.

Under ``TrainConfig.time_budget_s`` the configured epochs are each grade's most. A grade times
one record interval of epochs after its first block (which pays the one-off costs of a first
call), so that the timing itself costs little of a small share. Then it chooses: the budget left
(the budget less the finished grades' ``time_s``) is shared evenly by the grades still to
train, this one included, and the grade keeps the epochs that fit its share at the measured
rate, in whole record intervals, never more than configured and never fewer than the first
record after the timing. Timing every grade follows grades whose epochs cost differently
(grade 1 on two raw coordinates, later grades on 128 features) and hands the time an
early-stopped grade leaves to the grades after it.

A choice (``BudgetChoice``) is a pure function of the measured numbers (``choose_epochs``),
made once per grade; a sharded grade takes rank 0's (``train.loop``). It is recorded in the
grade's record (``settings["budget"]``) and in a saved grade in progress, so a resumed grade
continues with it instead of timing itself again.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import TypeGuard

from ..errors import InputError


def now() -> float:
    """The clock of budgets and grade times (tests replace it with a fake one)."""
    return time.perf_counter()


@dataclass(frozen=True)
class BudgetChoice:
    """A grade's epochs under the budget (``configured`` its most), this grade's share of the
    budget in seconds, the rate it measured over epochs ``measured`` (first, last; None when
    the grade ends before it is timed) and the reason in words."""

    epochs: int
    configured: int
    share_s: float
    seconds_per_epoch: float | None
    measured: tuple[int, int] | None
    reason: str

    def to_dict(self) -> dict:
        data = asdict(self)
        data["measured"] = list(self.measured) if self.measured is not None else None
        return data

    @classmethod
    def from_dict(cls, data, where: str) -> BudgetChoice:
        """A recorded choice; InputError ``where: ...`` (one line) when it is malformed."""
        if not isinstance(data, dict):
            raise InputError(f"{where} must be an object, got {type(data).__name__}")
        epochs, configured = data.get("epochs"), data.get("configured")
        rate, measured = data.get("seconds_per_epoch"), data.get("measured")
        pair = isinstance(measured, list) and len(measured) == 2
        valid = (
            _is_count(epochs) and _is_count(configured) and epochs <= configured
            and isinstance(data.get("reason"), str) and _is_number(data.get("share_s"))
            and (rate is None or (_is_number(rate) and rate >= 0))
            and (measured is None or (pair and all(isinstance(e, int) for e in measured)))
        )  # fmt: skip
        if not valid:
            raise InputError(f"{where} is not a time-budget choice: {data!r:.200}")
        return cls(
            data["epochs"], data["configured"], float(data["share_s"]),
            None if rate is None else float(rate),
            None if measured is None else (measured[0], measured[1]), data["reason"],
        )  # fmt: skip


def _is_count(value) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def choose_epochs(
    *,
    share_s: float,
    elapsed_s: float,
    done: int,
    seconds_per_epoch: float,
    configured: int,
    record_every: int,
) -> tuple[int, str]:
    """The epochs of a grade that has run ``done`` epochs in ``elapsed_s`` seconds and may use
    ``share_s``, at ``seconds_per_epoch`` from now on: ``(epochs, kind)``, kind "fits" (the
    configured epochs fit), "reduced" (the most whole record intervals that fit) or "least"
    (even the first record at or after ``done`` does not fit; the grade runs to it)."""
    least = min(configured, -(-done // record_every) * record_every)
    if seconds_per_epoch <= 0:
        return configured, "fits"
    more = max(0.0, share_s - elapsed_s) / seconds_per_epoch
    fit = (done + int(min(more, configured))) // record_every * record_every
    if fit >= configured:
        return configured, "fits"
    if fit >= least:
        return fit, "reduced"
    return least, "least"


@dataclass(frozen=True)
class GradeBudget:
    """One grade's place in the run's budget: the budget (s), what the finished grades spent
    (s), the grades still to train (this one included), the grade's configured epochs and
    record interval, and ``started``, the clock when it began less its time before a resume."""

    total_s: float
    spent_s: float
    grades_left: int
    configured: int
    record_every: int
    started: float

    @property
    def share_s(self) -> float:
        """This grade's share of the budget left."""
        return max(0.0, self.total_s - self.spent_s) / self.grades_left

    def decide_at(self, first: int) -> int:
        """The epoch after which the grade chooses, timing from the end of epoch ``first``: the
        first record epoch at least one record interval later."""
        every = self.record_every
        return -(-(first + every) // every) * every

    def unmeasured(self, at: int) -> BudgetChoice:
        """The choice of a grade whose configured epochs end by epoch ``at``: all of them."""
        reason = f"the configured {self.configured} epochs end before the timing does (epoch {at})"
        return BudgetChoice(self.configured, self.configured, self.share_s, None, None, reason)

    def choose(self, first: int, first_time: float, epoch: int) -> BudgetChoice:
        """The choice after epoch ``epoch``, the grade timed since the clock read
        ``first_time`` at the end of epoch ``first``."""
        clock = now()
        rate = (clock - first_time) / (epoch - first)
        elapsed, share = clock - self.started, self.share_s
        epochs, kind = choose_epochs(
            share_s=share, elapsed_s=elapsed, done=epoch + 1, seconds_per_epoch=rate,
            configured=self.configured, record_every=self.record_every,
        )  # fmt: skip
        return BudgetChoice(
            epochs, self.configured, share, rate, (first + 1, epoch),
            self._reason(kind, epochs, elapsed + (self.configured - epoch - 1) * rate, rate,
                         (first + 1, epoch)),
        )  # fmt: skip

    def _reason(self, kind: str, epochs: int, need: float, rate: float, timed) -> str:
        speed = f"{rate * 1e3:.3g} ms/epoch over epochs {timed[0]}-{timed[1]}"
        share = (
            f"this grade's share {self.share_s:.1f} s of the {self.total_s:g} s budget "
            f"({self.spent_s:.1f} s spent, grades left: {self.grades_left})"
        )
        if kind == "fits":
            return f"the configured {self.configured} epochs fit {share} at {speed}"
        if kind == "reduced":
            return f"{self.configured} epochs would take {need:.1f} s at {speed}; {share}"
        return f"even the least, {epochs} epochs, exceeds {share} at {speed}"


__all__ = ["BudgetChoice", "GradeBudget", "choose_epochs", "now"]

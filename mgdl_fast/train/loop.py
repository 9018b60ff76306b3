"""The training loop: one for an MGDL grade, the SGDL network and an MSDL model.

Full-batch epochs run in blocks between the epochs where the host has something to do (a
record, an early-stopping check, a checkpoint, the last epoch, or every epoch when a hook is
given); within a block nothing is read back from the device (epochs.py). Every epoch folds its
loss into a device-side flag that becomes NaN once any loss is not finite; the flag is read at
each record epoch, so divergence ends the grade within ``record_every`` epochs (DivergenceError).
Metrics are recorded as device tensors and read back at check epochs, checkpoints and when a
progress line is due.

A sharded grade (its objective's ``world`` has several ranks) agrees at every block boundary,
with one small all_reduce of flags, on divergence, on saving a checkpoint (the minute-based
schedule reads each rank's clock) and on a caught signal; at check epochs on early stopping.
So no rank ever stops, saves or leaves alone, whichever rank saw the signal.

Under a time budget (``train.budget``) the grade times its first epochs, then takes its epochs
(rank 0's choice on every rank) and runs at most those; a resumed grade keeps the choice it saved.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ..block import FlatParams
from ..distributed import SINGLE
from ..errors import DivergenceError
from ..tasks.base import GradeInputs, Objective
from . import budget as budgets
from .budget import BudgetChoice, GradeBudget
from .config import TrainConfig
from .early_stop import ValidationSmoothing
from .epochs import EpochRunner
from .history import MetricLog
from .optim import GradeOptimizer
from .progress import Progress
from .state import Checkpointer, GradeProgress, Interrupted


class GradeHook(Protocol):
    """Runs before an optimizer step of a grade with its ``BlockParams``, inputs and
    objective; a returned string stops the grade with that reason (e.g. the eigenvalue
    stopping rule). A hook with a ``watch_optimizer(grade, optimizer)`` method is handed each
    grade's ``GradeOptimizer`` before its first step (the Adam stability analysis reads its
    second moments)."""

    def __call__(
        self, grade: int, epoch: int, params: Any, inputs: GradeInputs, objective: Objective
    ) -> str | None: ...


@dataclass
class GradeRun:
    """What one grade's loop did: the metric log, epochs run, why it stopped, its time
    (including the time spent before a resume) and its epochs chosen under a time budget."""

    log: MetricLog
    epochs: int
    stop_reason: str
    elapsed_s: float
    budget: BudgetChoice | None = None


@dataclass
class GradeSetup:
    """One grade to train: its number, parameters, inputs, objective and optimizer."""

    number: int
    total: int
    params: FlatParams
    inputs: Any
    objective: Any
    optimizer: GradeOptimizer
    label: str = "grade"


def run_grade(
    grade: GradeSetup,
    cfg: TrainConfig,
    stop_rule: ValidationSmoothing,
    *,
    progress: Progress | None = None,
    cuda_graph: bool = False,
    hook: GradeHook | None = None,
    checkpointer: Checkpointer | None = None,
    save: Callable[[GradeProgress], None] | None = None,
    start: GradeProgress | None = None,
    budget: GradeBudget | None = None,
) -> GradeRun:
    """Train ``grade.params`` in place for up to ``cfg.epochs`` full-batch epochs, from
    ``start`` when resuming. Records ``objective.record`` every ``cfg.record_every`` epochs (the
    test split every ``cfg.test_every``), checks ``stop_rule`` at its check epochs when early
    stopping is on, hands its progress to ``save`` when ``checkpointer`` says it is due, and
    raises DivergenceError (a loss is NaN or infinite) or Interrupted (a signal, after saving).
    With ``budget``, at most the epochs it chooses from the grade's measured speed (``start``'s
    choice when it has one).
    """
    if (checkpointer is None) != (save is None):
        raise ValueError("pass both checkpointer and save, or neither")
    return _Loop(
        grade, cfg, stop_rule, progress, cuda_graph, hook, checkpointer, save, start, budget
    ).run()


class _Loop:
    def __init__(
        self, grade, cfg, stop_rule, progress, cuda_graph, hook, checkpointer, save, start, budget
    ):
        self.g, self.cfg, self.stop_rule, self.hook = grade, cfg, stop_rule, hook
        watch = getattr(hook, "watch_optimizer", None)
        if watch is not None:
            watch(grade.number, grade.optimizer)
        self.progress = progress or Progress(quiet=True)
        self.checkpointer, self.save = checkpointer, save
        grad = grade.params.zeros_like()
        self.runner = EpochRunner(
            grade.objective, grade.optimizer, grade.inputs, grade.params, grad,
            cuda_graph=cuda_graph,
        )  # fmt: skip
        self.log, self.epoch, self.before_s = MetricLog(), 0, 0.0
        self.retries: list[dict] = []
        self.last = cfg.epochs - 1
        self.budget = budget
        self.choice = None
        # (epoch, clock) at the end of the first block this process ran, and the epoch after
        # which the budget's choice is taken.
        self._timed = None
        self._decide = -1
        self.world = getattr(grade.objective, "world", SINGLE)
        # The signal every rank agreed on (sharded grades; None: none caught).
        self._signum = None
        if start is not None:
            self.log = MetricLog(start.series)
            self.epoch, self.before_s, self.retries = (
                start.epoch + 1,
                start.elapsed_s,
                start.retries,
            )
            stop_rule.load_state_dict(start.stop_rule)
            if start.budget is not None:
                # The saved choice holds, below the configured epochs (--resume may lower them).
                self.choice = start.budget
                self.last = min(cfg.epochs, start.budget.epochs) - 1
        self.started = budgets.now()

    def elapsed(self) -> float:
        return self.before_s + budgets.now() - self.started

    def run(self) -> GradeRun:
        reason = "max_epochs"
        label = f"{self.g.label} {self.g.number}/{self.g.total}"
        self.progress.start(label, self.last + 1, self.epoch)
        try:
            while self.epoch <= self.last:
                if self.hook is not None:
                    stop = self.hook(self.g.number, self.epoch, self.g.params, self.g.inputs,
                                     self.g.objective)  # fmt: skip
                    if self.world.sharded and self.world.any(bool(stop)):
                        stop = stop or "a hook on another rank stopped the grade"
                    if stop:
                        reason = stop
                        break
                end = self.epoch if self.hook is not None else self._next_event(self.last)
                self.runner.run(end - self.epoch + 1)
                self.progress.advance(end - self.epoch + 1)
                self.epoch = end
                if self._events(self.last):
                    reason = "early_stopping"
                    self.epoch += 1
                    break
                if self.budget is not None and self.choice is None:
                    self._time_epochs()
                self.epoch += 1
            self._flush()
        finally:
            self.progress.finish()
        return GradeRun(self.log, self.epoch, reason, self.elapsed(), self.choice)

    def _time_epochs(self) -> None:
        """Under a budget: start timing after the first block, choose after the decision
        epoch (a record epoch, so the blocks stay as they were)."""
        budget = self.budget
        assert budget is not None
        if self._timed is None:
            self._timed, self._decide = (self.epoch, budgets.now()), budget.decide_at(self.epoch)
            if self._decide >= self.last:
                self._take(budget.unmeasured(self._decide))
        elif self.epoch == self._decide:
            self._take(budget.choose(*self._timed, self.epoch))

    def _take(self, choice: BudgetChoice) -> None:
        """Run at most ``choice.epochs`` (rank 0's choice on every rank) and say so."""
        if self.world.sharded:
            choice = self.world.broadcast(choice)
        self.choice, self.last = choice, choice.epochs - 1
        self.progress.limit(
            choice.epochs,
            f"time budget: {choice.epochs} of {choice.configured} epochs ({choice.reason})",
            budget=choice.to_dict(),
        )

    def _next_event(self, last: int) -> int:
        """The first epoch >= the current one after which the host has something to do."""
        every = self.cfg.record_every
        candidates = [-(-self.epoch // every) * every, self.stop_rule.next_check_epoch(self.epoch)]
        if self.checkpointer is not None and self.checkpointer.next_epoch(self.epoch) is not None:
            candidates.append(self.checkpointer.next_epoch(self.epoch))
        return min(*candidates, last)

    def _events(self, last: int) -> bool:
        """The host's work after epoch ``self.epoch``; True when early stopping ends the grade."""
        epoch, cfg = self.epoch, self.cfg
        flag = 0.0
        if epoch % cfg.record_every == 0:
            with_test = epoch % cfg.test_every == 0
            values = self.g.objective.record(self.g.inputs, self.g.params, with_test=with_test)
            for name, value in values.items():
                self.log.add(name, epoch, value)
            flag = self.runner.nonfinite.item()
        saving = self.checkpointer is not None and self.checkpointer.due(epoch)
        if self.world.sharded:
            flag, saving = self._agree(flag, saving)
        if not math.isfinite(flag):
            raise DivergenceError(self.g.number, epoch, flag)
        check = self.stop_rule.is_check_epoch(epoch)
        if check or epoch == last or saving or self.progress.due():
            self._flush()
        if saving:
            self._save()
        stop = (
            check and cfg.early_stopping and self.stop_rule.should_stop(self.log.values("val_loss"))
        )
        return self.world.any(stop) if self.world.sharded and check else stop

    def _agree(self, flag: float, saving: bool) -> tuple[float, bool]:
        """Every rank's view of divergence, a due checkpoint and a caught signal, combined
        (one all_reduce): the flag NaN if any rank's is, saving if any rank's is due."""
        caught = self.checkpointer.interrupted if self.checkpointer is not None else None
        bad, due, signum = self.world.agree([not math.isfinite(flag), saving, caught or 0])
        if signum:
            self._signum = signum
        return (math.nan if bad else flag), bool(due or signum)

    def _flush(self) -> None:
        entries = self.log.flush()
        if entries:
            self.progress.records(self.g.number, entries)
            self.progress.show(self.g.objective.postfix(self.log))

    def _save(self) -> None:
        checkpointer, save = self.checkpointer, self.save
        assert checkpointer is not None and save is not None
        g = self.g
        save(
            GradeProgress(
                grade=g.number,
                epoch=self.epoch,
                params=g.params.flat,
                optimizer=g.optimizer.state.state_dict(),
                stop_rule=self.stop_rule.state_dict(),
                series=self.log.series,
                elapsed_s=self.elapsed(),
                lr=g.optimizer.lr,
                retries=self.retries,
                budget=self.choice,
            )
        )
        checkpointer.saved()
        self.progress.event("checkpoint", grade=g.number, epoch=self.epoch)
        # A sharded grade leaves on the signal it agreed on, never on one caught since.
        signum = self._signum if self.world.sharded else checkpointer.interrupted
        if signum is not None:
            raise Interrupted(signum, g.number, self.epoch)

"""The training loop: one for an MGDL grade, the SGDL network and an MSDL model.

Full-batch epochs run in blocks between the epochs where the host has something to do (a
record, an early-stopping check, the last epoch, or every epoch when a hook is given); within a
block nothing is read back from the device (epochs.py). Metrics are recorded as device tensors
and read back at check epochs, where a NaN or infinite training loss ends the grade with a
DivergenceError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol

from tqdm.auto import tqdm

from ..block import FlatParams
from ..errors import DivergenceError
from ..tasks.base import GradeInputs, Objective
from .config import TrainConfig
from .early_stop import ValidationSmoothing
from .epochs import EpochRunner
from .history import MetricLog
from .optim import GradeOptimizer


class GradeHook(Protocol):
    """Runs before an optimizer step of a grade with its ``BlockParams``, inputs and
    objective; a returned string stops the grade with that reason (e.g. the eigenvalue
    stopping rule)."""

    def __call__(
        self, grade: int, epoch: int, params: Any, inputs: GradeInputs, objective: Objective
    ) -> str | None: ...


@dataclass
class GradeRun:
    """What one grade's loop did: the metric log, epochs run and why it stopped."""

    log: MetricLog
    epochs: int
    stop_reason: str


def run_grade(
    grade: int,
    params: FlatParams,
    inputs,
    objective,
    optimizer: GradeOptimizer,
    cfg: TrainConfig,
    stop_rule: ValidationSmoothing,
    *,
    total_grades: int,
    progress: bool,
    cuda_graph: bool = False,
    hook: GradeHook | None = None,
    label: str = "grade",
) -> GradeRun:
    """Train ``params`` in place for up to ``cfg.epochs`` full-batch epochs.

    Records ``objective.record`` every ``cfg.record_every`` epochs (the test split every
    ``cfg.test_every``), checks ``stop_rule`` at its check epochs when early stopping is on, and
    raises DivergenceError when a recorded training loss is NaN or infinite.
    """
    grad = params.zeros_like()
    runner = EpochRunner(objective, optimizer, inputs, params, grad, cuda_graph=cuda_graph)
    log, reason, epoch, last = MetricLog(), "max_epochs", 0, cfg.epochs - 1
    # disable=None: tqdm shows the bar on a terminal only (redrawn bars flood log files).
    with tqdm(
        total=cfg.epochs,
        desc=f"{label} {grade}/{total_grades}",
        unit="ep",
        disable=None if progress else True,
        dynamic_ncols=True,
    ) as bar:
        while epoch <= last:
            if hook is not None and (stop := hook(grade, epoch, params, inputs, objective)):
                reason = stop
                break
            block_end = epoch if hook is not None else _next_event(epoch, last, cfg, stop_rule)
            runner.run(block_end - epoch + 1)
            bar.update(block_end - epoch + 1)
            epoch = block_end
            if epoch % cfg.record_every == 0:
                with_test = epoch % cfg.test_every == 0
                for name, value in objective.record(inputs, params, with_test=with_test).items():
                    log.add(name, epoch, value)
            check = stop_rule.is_check_epoch(epoch)
            if check or epoch == last:
                log.flush()
                _raise_if_diverged(grade, log)
                bar.set_postfix(objective.postfix(log))
                if check and cfg.early_stopping and stop_rule.should_stop(log.values("val_loss")):
                    reason = "early_stopping"
                    epoch += 1
                    break
            epoch += 1
        log.flush()
    return GradeRun(log, epoch, reason)


def _next_event(epoch: int, last: int, cfg: TrainConfig, stop_rule: ValidationSmoothing) -> int:
    """The first epoch >= ``epoch`` after which the host records, checks or stops."""
    record = -(-epoch // cfg.record_every) * cfg.record_every
    return min(record, stop_rule.next_check_epoch(epoch), last)


def _raise_if_diverged(grade: int, log: MetricLog) -> None:
    epochs, losses = log.series.get("train_loss", ([], []))
    for epoch, loss in zip(epochs, losses):
        if not math.isfinite(loss):
            raise DivergenceError(grade, epoch, loss)

"""A sharded fit under a time budget, run by every rank (``tests/distributed/launch.py``).

Each rank's fake clock runs at its own speed: rank 0 at 1 s per epoch, rank 1 three times
slower. Alone, rank 1 would choose fewer epochs; every rank must take rank 0's choice.
"""

from __future__ import annotations

from pathlib import Path

import torch

from mgdl_fast import distributed, fit
from mgdl_fast.tasks.regression import RegressionObjective, RegressionTask
from mgdl_fast.train import budget as budgets

from ..distributed.scenarios import REGRESSION_SIZE, pixels
from ..helpers import quick_train, tiny_model


class _Clock:
    def __init__(self, per_epoch: float):
        self.t, self.per_epoch = 0.0, per_epoch

    def __call__(self) -> float:
        return self.t


class _TimedObjective(RegressionObjective):
    def __init__(self, task, clock: _Clock):
        super().__init__(task)
        self.clock = clock

    def step(self, inputs, params, grad):
        self.clock.t += self.clock.per_epoch
        return super().step(inputs, params, grad)


def budgeted_fit(world: distributed.World) -> dict:
    """Two grades of at most 60 epochs, timed over epochs 1-4, 40 s for the run: on rank 0's
    clock each grade keeps 20 epochs; on rank 1's, 8."""
    clock = _Clock(1.0 + 2.0 * world.rank)
    budgets.now = clock
    task = RegressionTask(pixels(*REGRESSION_SIZE), world=world)
    cfg = quick_train(epochs=60, record_every=4, test_every=4, optimizer="gd", lr=0.2,
                      early_stopping=False, time_budget_s=40.0)  # fmt: skip
    result = fit(task, _TimedObjective(task, clock), tiny_model(grades=2), cfg, progress=False)
    return {
        "params": [p.flat.detach().clone() for p in result.model.grades],
        "epochs": [r.epochs_run for r in result.records],
        "budget": [r.settings["budget"] for r in result.records],
    }


def budget_rank(rank: int, out: str) -> None:
    world = distributed.launch(cuda=False)
    assert world.rank == rank and world.size == 2
    torch.save(budgeted_fit(world), Path(out) / f"rank{rank}.pt")
    distributed.finish(world)

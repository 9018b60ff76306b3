"""Small fits run both by one process and by every rank of a sharded run, summarised the same
way so the tests can compare them.

Image sizes are chosen so that two ranks hold equal halves of every split (28 x 20 regression:
train and val 140 rows, test 560; 16 x 20 denoising: 320 pixels): a two-rank step then weights
its chunk by exactly 1/2, and one process chunked at the shard boundary (``chunk=SHARD[...]``)
sums the same two halves in the same order.
"""

from __future__ import annotations

import signal
from pathlib import Path

import numpy as np
import torch

from mgdl_fast import distributed, fit
from mgdl_fast.io.lazy import lazy_from_array
from mgdl_fast.tasks.lattice import StreamedRegressionTask
from mgdl_fast.tasks.regression import RegressionObjective, RegressionTask
from mgdl_fast.tasks.restoration import InverseTask, TVObjective
from mgdl_fast.train.state import Checkpointer, Interrupted

from ..helpers import quick_train, tiny_model

REGRESSION_SIZE, DENOISE_SIZE = (28, 20), (16, 20)
# Rows of one rank's train split with two ranks (the chunk that mimics a shard).
SHARD = {"regression": 70, "streamed": 70, "denoise": 160}
SCENARIOS = {
    "regression-gd": ("regression", {"optimizer": "gd", "lr": 0.2}),
    # Early stopping after a few checks: record every 2, smooth over 2, a loose tolerance.
    "regression-adam": (
        "regression",
        {
            "optimizer": "adam",
            "lr": 2e-3,
            "epochs": 60,
            "record_every": 2,
            "test_every": 2,
            "smooth_window": 2,
            "rel_tol": 3e-2,
        },
    ),  # fmt: skip
    # Features on disk: each rank's store in its own temporary directory.
    "streamed-gd": ("streamed", {"optimizer": "gd", "lr": 0.2, "feature_store": "disk"}),
    # The TV loss is a sum over pixels, not a mean: GD needs a small step (0.05 diverges).
    "denoise-gd": ("denoise", {"optimizer": "gd", "lr": 1e-3}),
    "denoise-adam": ("denoise", {"optimizer": "adam", "lr": 5e-3}),
}


def pixels(height: int, width: int) -> np.ndarray:
    """A smooth pattern with noise ``[H, W, 1]`` in [0, 1]."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[0:height, 0:width] / 20.0
    smooth = 0.5 + 0.3 * np.sin(6 * x) * np.cos(4 * y)
    return np.clip(smooth + 0.05 * rng.standard_normal(smooth.shape), 0, 1)[..., None]


def make(kind: str, world: distributed.World):
    """The task and objective of ``kind``, sharded over ``world``."""
    if kind == "denoise":
        task = InverseTask(pixels(*DENOISE_SIZE), noise=10 / 255, seed=1, world=world)
        return task, TVObjective(task, beta=0.05, lam=2e-3, alpha=0.99)
    image = pixels(*REGRESSION_SIZE)
    if kind == "streamed":
        task = StreamedRegressionTask(lazy_from_array(image), band_rows=3, world=world)
    else:
        task = RegressionTask(image, world=world)
    return task, RegressionObjective(task)


def summary(result) -> dict:
    """What the tests compare: every grade's parameters and record."""
    return {
        "params": [p.flat.detach().clone() for p in result.model.grades],
        "final": [r.final for r in result.records],
        "epochs": [r.epochs_run for r in result.records],
        "stop": [r.stop_reason for r in result.records],
        "retries": [r.retries for r in result.records],
        "curves": [r.curves for r in result.records],
    }


def run(name: str, world: distributed.World, chunk: int | None = None, **kwargs) -> dict:
    """Scenario ``name`` on ``world``: in memory, or streamed in chunks of ``chunk`` rows."""
    kind, settings = SCENARIOS[name]
    stream = kind == "streamed" or chunk is not None
    settings = {"epochs": 12, "record_every": 4, "test_every": 4, **settings}
    if stream:
        settings |= {"stream": True, "chunk_size": chunk or SHARD[kind]}
    task, objective = make(kind, world)
    result = fit(task, objective, tiny_model(grades=2), quick_train(**settings), progress=False,
                 **kwargs)  # fmt: skip
    return summary(result)


class NaNOnOneRank(RegressionObjective):
    """From epoch ``epoch`` of the first attempt, rank ``rank``'s step reports a NaN loss
    (after the all_reduce: only that rank sees it)."""

    def __init__(self, task, rank: int, epoch: int):
        super().__init__(task)
        self.rank, self.epoch, self.attempt, self.steps = rank, epoch, 0, 0

    def start_grade(self, engine, inputs, params):
        super().start_grade(engine, inputs, params)
        self.attempt, self.steps = self.attempt + 1, 0

    def step(self, inputs, params, grad):
        loss = super().step(inputs, params, grad)
        self.steps += 1
        if self.world.rank == self.rank and self.attempt == 1 and self.steps > self.epoch:
            return loss * float("nan")
        return loss


def diverge_on_rank_1(world: distributed.World) -> dict:
    """Rank 1 alone sees a NaN loss in epoch 5: every rank must retry the grade together."""
    task = RegressionTask(pixels(*REGRESSION_SIZE), world=world)
    objective = NaNOnOneRank(task, rank=1, epoch=5)
    cfg = quick_train(epochs=12, record_every=4, optimizer="gd", lr=0.2)
    result = fit(task, objective, tiny_model(grades=1), cfg, progress=False, on_diverge="retry")
    return summary(result)


def signal_on_rank_1(world: distributed.World, out: Path) -> dict:
    """Rank 1 alone catches SIGTERM before epoch 5 (as its signal handler would record it):
    every rank must save at the same epoch and leave; rank 0 writes the state."""
    task = RegressionTask(pixels(*REGRESSION_SIZE), world=world)
    saved = []
    checkpointer = Checkpointer(saved.append, every_epochs=1000)

    def hook(grade, epoch, params, inputs, objective):
        if world.rank == 1 and epoch == 5:
            checkpointer.interrupted = signal.SIGTERM
        return None

    cfg = quick_train(epochs=12, record_every=4, optimizer="gd", lr=0.2)
    result = fit(task, RegressionObjective(task), tiny_model(grades=2), cfg, progress=False,
                 hook=hook, checkpointer=checkpointer)  # fmt: skip
    assert isinstance(result.interrupted, Interrupted)
    if world.is_main:
        torch.save(saved[-1].current.params, out / "saved_params.pt")
    return {"epoch": result.interrupted.epoch, "grade": result.interrupted.grade,
            "signum": result.interrupted.signum, "saves": len(saved)}  # fmt: skip


def fail_on_rank_1(world: distributed.World) -> None:
    """Rank 1 raises in epoch 3; rank 0 must not wait for it forever."""

    def hook(grade, epoch, params, inputs, objective):
        if world.rank == 1 and epoch == 3:
            raise RuntimeError("rank 1 fails on purpose")
        return None

    task = RegressionTask(pixels(*REGRESSION_SIZE), world=world)
    cfg = quick_train(epochs=50, record_every=4, optimizer="gd", lr=0.2)
    fit(task, RegressionObjective(task), tiny_model(grades=1), cfg, progress=False, hook=hook)


def every_scenario(rank: int, out: str) -> None:
    """A rank of the sharded runs: every scenario in turn, results into ``out/rank<r>.pt``."""
    world = distributed.launch(cuda=False)
    assert world.rank == rank and world.size == 2
    results = {name: run(name, world) for name in SCENARIOS}
    results["diverge"] = diverge_on_rank_1(world)
    results["signal"] = signal_on_rank_1(world, Path(out))
    torch.save(results, Path(out) / f"rank{rank}.pt")
    distributed.finish(world)


def failing_rank(rank: int) -> None:
    world = distributed.launch(cuda=False)
    fail_on_rank_1(world)

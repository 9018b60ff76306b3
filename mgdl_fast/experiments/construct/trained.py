"""Trained runs of paper 2's study: MGDL (frozen grades, ``mgdl_fast.fit``), the same depth
trained end to end (SGDL, ``mgdl_fast.fit``) and MGDL without freezing (joint.py), each with its
grade-wise train and test L2 and Linf errors and its training curve.

``L2`` is the root mean square of ``prediction - f`` over a split's points (the grid's Riemann
sum of the L^2([0, 1]^D) norm for the train and test grids) and ``Linf`` its largest magnitude.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...tasks.regression import RegressionObjective
from ...train.config import ModelConfig, TrainConfig
from ...train.trainer import fit
from .joint import fit_joint


@dataclass(frozen=True)
class Setup:
    """One architecture and budget: ``grades`` grades of ``layers`` hidden ReLU layers of
    ``width``; ``epochs`` Adam steps per grade at ``lr`` (SGDL: ``grades * epochs`` in all)."""

    grades: int
    width: int
    layers: int
    epochs: int
    lr: float
    record_every: int = 25

    def model(self, kind: str) -> ModelConfig:
        kind = "sgdl" if kind == "sgdl" else "mgdl"
        return ModelConfig(kind, grades=self.grades, width=self.width, layers=self.layers)

    def train(self, kind: str, seed: int) -> TrainConfig:
        epochs = self.epochs * (self.grades if kind == "sgdl" else 1)
        return TrainConfig(
            epochs=epochs, lr=self.lr, optimizer="adam", early_stopping=False,
            record_every=self.record_every, test_every=epochs, seed=seed, device="cpu",
            backend="torch",
        )  # fmt: skip

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def errors(pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    diff = (pred.double() - y.double()).abs()
    return {"L2": float(torch.sqrt(torch.mean(diff**2))), "Linf": float(diff.max())}


def _grade_errors(task, predictions: list[dict[str, torch.Tensor]]) -> list[dict]:
    """Per grade: train and test L2 and Linf of that grade's predictions ``{split: [N, C]}``."""
    rows = []
    for k, preds in enumerate(predictions, start=1):
        row: dict = {"grade": k}
        for split in ("train", "test"):
            for norm, value in errors(preds[split], task.splits[split].y).items():
                row[f"{split}_{norm}"] = value
        rows.append(row)
    return rows


def _fitted(task, setup: Setup, kind: str, seed: int) -> dict:
    """MGDL or SGDL through the trainer: predictions after each grade (SGDL: one), the train
    loss curve over all epochs, and each grade's first epoch."""
    result = fit(task, RegressionObjective(task), setup.model(kind), setup.train(kind, seed),
                 progress=False)  # fmt: skip
    if result.diverged is not None:
        raise result.diverged
    model = result.model
    predictions = [
        {name: model.predict(s.x, num_grades=k + 1, backend="torch")
         for name, s in task.splits.items()}
        for k in range(len(model))
    ]  # fmt: skip
    epochs, losses, onsets, done = [], [], [], 0
    for record in result.records:
        onsets.append(done)
        curve = record.curves["train_loss"]
        epochs += [done + e for e in curve["epoch"]]
        losses += curve["value"]
        done += record.epochs_run
    return {
        "curve": {"epoch": epochs, "train_loss": losses},
        "onsets": onsets,
        "predictions": predictions,
        "time_s": sum(r.time_s for r in result.records),
    }


def run(task, setup: Setup, kind: str, seed: int) -> dict:
    """One run: ``{"kind", "seed", "grades": [errors per grade], "curve", "onsets",
    "time_s"}`` (SGDL has one row, for the whole network)."""
    out = fit_joint(task, setup.model(kind), setup.train(kind, seed)) if kind == "joint" else (
        _fitted(task, setup, kind, seed))  # fmt: skip
    rows = _grade_errors(task, out.pop("predictions"))
    return {"kind": kind, "seed": seed, "grades": rows, **out}


def summarize(runs: list[dict]) -> list[dict]:
    """Mean and standard deviation over seeds of every error of every grade of ``runs`` (one
    kind, one setup)."""
    out = []
    for k in range(len(runs[0]["grades"])):
        rows = [r["grades"][k] for r in runs]
        entry: dict = {"grade": k + 1}
        for key in rows[0]:
            if key != "grade":
                values = np.array([row[key] for row in rows])
                entry[key] = {"mean": float(values.mean()), "std": float(values.std())}
        out.append(entry)
    return out


def first_non_decreasing_grade(summary: list[dict], key: str = "train_L2") -> int | None:
    """The first grade whose mean ``key`` is not below the previous grade's, or None."""
    for prev, row in zip(summary, summary[1:]):
        if not row[key]["mean"] < prev[key]["mean"]:
            return int(row["grade"])
    return None

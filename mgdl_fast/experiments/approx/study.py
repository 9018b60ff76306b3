"""Function approximation experiments (PROTOCOL 4 and 6): MGDL vs SGDL vs MSDL on the 1D
settings 1 and 2 and on our 2D target, with a grade-wise error table.

The 1D models are the authors' synthetic ones: MGDL grades ``[1, 32, 1]`` then ``[32, 32, 1]``
(one hidden layer of 32 per grade, 4 grades), SGDL ``[1, 32, 32, 32, 32, 1]``, MSDL 4 subnets
``[1, 8, 8, 8, 8, 1]`` with input scales {1, 2, 4, 8}; full-batch gradient descent with the
authors' selected step sizes (MGDL 6e-2, SGDL 5e-3, MSDL 4e-3), their He-normal init (weights
N(0, 2 / fan_in), zero biases), loss ``0.5 * mean((f - y)^2)``, validation smoothing every 100
epochs over 20 records with relative tolerance 1e-6. The 2D setting is ours (no paper has one):
MGDL 4 grades x 2 hidden layers x 64, SGDL 8 x 64, MSDL 4 subnets of 4 x 48 (about 29k
parameters each), Adam 1e-3, Glorot init, a 64 x 64 training grid (quick) or 128 x 128 (paper).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ...tasks.functions import FunctionTask, function_2d
from ...tasks.regression import RegressionObjective
from ...train.config import ModelConfig, TrainConfig
from ...train.trainer import fit
from .msdl import MSDLConfig, fit_msdl

MODELS = ("mgdl", "sgdl", "msdl")


@dataclass(frozen=True)
class Setting:
    """One experiment: the task, the three architectures, optimizer, step sizes and init, and the
    epochs per preset (per grade for MGDL, in total for SGDL and MSDL, as in the papers)."""

    name: str
    make_task: Callable[..., FunctionTask]
    J: dict[str, int]
    mgdl: ModelConfig
    sgdl: ModelConfig
    msdl: MSDLConfig
    optimizer: str
    lr: dict[str, float]
    init: str
    epochs: dict[str, int] = field(default_factory=dict)


def _setting_1d(k: int) -> Setting:
    return Setting(
        name=str(k),
        make_task=lambda J, device: FunctionTask.setting(k, J=J, device=device),
        J={"quick": 10, "paper": 10},
        mgdl=ModelConfig("mgdl", grades=4, width=32, layers=1),
        sgdl=ModelConfig("sgdl", grades=4, width=32, layers=1),
        msdl=MSDLConfig(width=8, layers=4),
        optimizer="gd",
        lr={"mgdl": 6e-2, "sgdl": 5e-3, "msdl": 4e-3},
        init="he",
        epochs={"quick": 30_000, "paper": 1_000_000},
    )


SETTINGS = {
    "1": _setting_1d(1),
    "2": _setting_1d(2),
    "2d": Setting(
        name="2d",
        make_task=lambda J, device: function_2d(J=J, device=device),
        J={"quick": 6, "paper": 7},
        mgdl=ModelConfig("mgdl", grades=4, width=64, layers=2),
        sgdl=ModelConfig("sgdl", grades=4, width=64, layers=2),
        msdl=MSDLConfig(width=48, layers=4),
        optimizer="adam",
        lr={"mgdl": 1e-3, "sgdl": 1e-3, "msdl": 1e-3},
        init="glorot",
        epochs={"quick": 2_000, "paper": 20_000},
    ),
}


def error_metrics(pred: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """``loss`` = 0.5 MSE, ``rel_l2`` = |pred - y|_2 / |y|_2 and ``max_abs`` of ``[N, C]``."""
    diff = pred.double() - y.double()
    return {
        "loss": 0.5 * torch.mean(diff * diff).item(),
        "rel_l2": (torch.linalg.vector_norm(diff) / torch.linalg.vector_norm(y.double())).item(),
        "max_abs": diff.abs().max().item(),
    }


def _row(model: str, grade, record, pred: torch.Tensor, task: FunctionTask) -> dict:
    test = error_metrics(pred, task.splits["test"].y)
    return {
        "model": model,
        "grade": grade,
        "epochs": record.epochs_run,
        "stop_reason": record.stop_reason,
        "time_s": record.time_s,
        "train_loss": record.final.get("train_loss"),
        "val_loss": record.final.get("val_loss"),
        "test_loss": test["loss"],
        "test_rel_l2": test["rel_l2"],
        "test_max_abs": test["max_abs"],
    }


def run_model(model: str, setting: Setting, task, train_cfg: TrainConfig, progress: bool):
    """Train one model. Returns (table rows, test predictions per row, grade records, params,
    divergence message or None)."""
    x_test, backend = task.splits["test"].x, train_cfg.backend
    if model == "msdl":
        msdl, record, error = fit_msdl(task, setting.msdl, train_cfg, progress=progress)
        pred = msdl.predict(x_test, backend=backend)
        diverged = None if error is None else str(error)
        return [_row(model, None, record, pred, task)], [pred], [record], msdl.num_params, diverged
    cfg = setting.mgdl if model == "mgdl" else setting.sgdl
    result = fit(task, RegressionObjective(task), cfg, train_cfg, progress=progress)
    preds = [
        result.model.predict(x_test, num_grades=k + 1, backend=backend)
        for k in range(len(result.model))
    ]
    grades = [k + 1 if model == "mgdl" else None for k in range(len(preds))]
    rows = [_row(model, g, r, p, task) for g, r, p in zip(grades, result.records, preds)]
    params = sum(p.shape.num_params for p in result.model.grades)
    diverged = None if result.diverged is None else str(result.diverged)
    return rows, preds, result.records, params, diverged


def run_setting(
    setting: Setting,
    models: tuple[str, ...],
    train_cfgs: dict[str, TrainConfig],
    *,
    J: int | None = None,
    preset: str = "quick",
    progress: bool = False,
) -> tuple[dict, FunctionTask, dict[str, list[torch.Tensor]]]:
    """Run ``models`` on ``setting`` (2**J training points per axis; default: the preset's).
    Returns the JSON-able results, the task, and each model's
    test predictions (one per MGDL grade, one for SGDL and MSDL)."""
    device = next(iter(train_cfgs.values())).torch_device()
    task = setting.make_task(J if J is not None else setting.J[preset], device)
    results: dict[str, Any] = {"setting": setting.name, "target": task.description}
    results.update(rows=[], models={})
    predictions = {}
    for model in models:
        start = time.perf_counter()
        rows, preds, records, params, diverged = run_model(
            model, setting, task, train_cfgs[model], progress
        )
        results["rows"] += rows
        results["models"][model] = {
            "params": params,
            "train": train_cfgs[model].to_dict(),
            "wall_s": time.perf_counter() - start,
            "diverged": diverged,
            "records": [r.to_dict() for r in records],
        }
        predictions[model] = preds
    return results, task, predictions

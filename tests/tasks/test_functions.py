"""The 1D synthetic data of PROTOCOL 6, and MGDL on it."""

from __future__ import annotations

import math

import torch

from mgdl_fast import ModelConfig, TrainConfig, fit
from mgdl_fast.tasks import FunctionTask
from mgdl_fast.tasks.regression import RegressionObjective


def test_settings_match_the_protocol():
    task = FunctionTask.setting(1)
    shapes = {name: tuple(split.x.shape) for name, split in task.splits.items()}
    assert shapes == {"train": (1024, 1), "val": (1024, 1), "test": (10_000, 1)}
    train = task.splits["train"]
    assert train.x[0].item() == 0.0 and train.x[-1].item() == 1.0
    test = task.splits["test"]
    idx = int(torch.argmin((test.x[:, 0] - 0.3).abs()))
    x = test.x[idx, 0].item()
    phases = [6.0652933, 1.9772031, 3.9774444]
    expected = sum(math.sin(2 * math.pi * k * x + p) for k, p in zip([1, 5.5, 10], phases))
    assert abs(test.y[idx, 0].item() - expected) < 1e-5
    val = task.splits["val"].x
    assert val.min() >= 0 and val.max() <= 1
    assert FunctionTask.setting(2).splits["train"].y.abs().max() <= 5


def test_mgdl_error_falls_at_every_grade_on_setting_1():
    task = FunctionTask.setting(1, J=8)
    result = fit(
        task,
        RegressionObjective(task),
        ModelConfig(grades=3, width=32, layers=1),
        TrainConfig(epochs=400, lr=1e-2, device="cpu", early_stopping=False),
        progress=False,
    )
    losses = [r.final["test_loss"] for r in result.records]
    assert all(b < a for a, b in zip(losses, losses[1:])), losses

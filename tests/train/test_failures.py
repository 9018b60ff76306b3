"""Divergence and collapse: a NaN loss is caught at the next record epoch from the device-side
flag; ``on_diverge="retry"`` retrains the grade at half the lr and records it; a collapsed or
useless grade is recorded and warned about."""

from __future__ import annotations

import logging

import pytest
import torch

from mgdl_fast import RegressionTask, fit
from mgdl_fast.tasks.regression import RegressionObjective
from mgdl_fast.train.health import grade_health

from ..helpers import quick_train, small_camera, tiny_model


class _NaNAfter(RegressionObjective):
    """In the attempts listed in ``bad`` (1-based ``start_grade`` calls), every step from
    epoch ``epoch`` on returns a NaN loss and gradient."""

    def __init__(self, task, epoch: int, bad):
        super().__init__(task)
        self.epoch, self.bad, self.attempt, self.steps = epoch, set(bad), 0, 0

    def start_grade(self, engine, inputs, params):
        super().start_grade(engine, inputs, params)
        self.attempt, self.steps = self.attempt + 1, 0

    def step(self, inputs, params, grad):
        loss = super().step(inputs, params, grad)
        self.steps += 1
        if self.attempt in self.bad and self.steps > self.epoch:
            grad.flat.fill_(float("nan"))
            return loss * float("nan")
        return loss


@pytest.fixture(scope="module")
def task():
    return RegressionTask(small_camera(16).pixels)


def test_a_nan_loss_is_caught_at_the_next_record_epoch(task):
    objective = _NaNAfter(task, epoch=13, bad=[1])
    result = fit(task, objective, tiny_model(grades=1), quick_train(epochs=500), progress=False)
    assert result.diverged is not None
    # The NaN appears in epoch 13's step; the next record is epoch 20 (not the check at 199).
    assert result.diverged.epoch == 20 and result.diverged.grade == 1


def test_retry_halves_the_lr_and_records_it(task, caplog):
    objective = _NaNAfter(task, epoch=5, bad=[1])
    with caplog.at_level(logging.WARNING, logger="mgdl_fast"):
        result = fit(
            task, objective, tiny_model(grades=1), quick_train(epochs=40), progress=False,
            on_diverge="retry",
        )  # fmt: skip
    assert result.diverged is None and len(result.records) == 1
    record = result.records[0]
    assert record.retries == [
        {"lr": 1e-2, "epoch": 10, "loss": pytest.approx(float("nan"), nan_ok=True)}
    ]
    assert record.settings["lr"] == 5e-3 and record.epochs_run == 40
    assert any("retrying grade 1 at lr 0.005" in r.getMessage() for r in caplog.records)


def test_retries_are_bounded(task):
    objective = _NaNAfter(task, epoch=0, bad=range(1, 100))
    result = fit(
        task, objective, tiny_model(grades=1), quick_train(epochs=30), progress=False,
        on_diverge="retry",
    )  # fmt: skip
    assert result.diverged is not None and not result.records


def test_a_collapsed_grade_is_recorded_and_warned(caplog):
    features = torch.zeros(100, 128)
    features[:, 7] = torch.rand(100)
    with caplog.at_level(logging.WARNING, logger="mgdl_fast"):
        health = grade_health(3, features.amax(0), baseline_psnr=20.0, final={"train_psnr": 20.005})
    assert health == {
        "alive_units": 1, "units": 128, "mean_predictor_psnr": 20.0,
        "psnr_gain_db": pytest.approx(0.005), "collapsed": True, "no_gain": True,
    }  # fmt: skip
    messages = [r.getMessage() for r in caplog.records]
    assert "grade 3 collapsed: 127 of 128 units never activate" in messages
    assert any("no better than the mean predictor" in m for m in messages)


def test_a_healthy_grade_records_its_gain(task):
    result = fit(task, RegressionObjective(task), tiny_model(grades=2), quick_train(),
                 progress=False)  # fmt: skip
    for record in result.records:
        health = record.health
        assert not health["collapsed"] and health["psnr_gain_db"] > 0.5
        assert 0 < health["alive_units"] <= health["units"] == 32

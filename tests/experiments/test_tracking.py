"""Eigenvalue tracking as a trainer hook: when spectra are taken, at which iterate, and the
MGDL eigenvalue stopping rule."""

from __future__ import annotations

import pytest

from mgdl_fast import ModelConfig, TrainConfig, fit
from mgdl_fast.experiments.analysis.tracking import EIG_STOP_REASON, EigenTracker, track_eigenvalues
from mgdl_fast.tasks import FunctionTask
from mgdl_fast.tasks.regression import RegressionObjective

MGDL = ModelConfig(kind="mgdl", grades=2, width=8, layers=1)


pytestmark = pytest.mark.usefixtures("one_thread")


def _gd(epochs: int, lr: float, **kw) -> TrainConfig:
    return TrainConfig(
        epochs=epochs, lr=lr, optimizer="gd", device="cpu", early_stopping=False, init="he", **kw
    )


def _task():
    task = FunctionTask.setting(1, J=6)
    return task, RegressionObjective(task)


def test_spectra_are_taken_every_interval_before_the_update():
    task, objective = _task()
    tracker = EigenTracker(0.05, 4, k=3)
    result = fit(task, objective, MGDL, _gd(13, 0.05, record_every=1), progress=False, hook=tracker)
    iterations = [(e.grade, e.iteration) for e in tracker.evaluations]
    assert iterations == [(g, i) for g in (1, 2) for i in (0, 4, 8, 12)]
    for grade, record in zip((1, 2), result.records):
        losses = dict(zip(*[record.curves["train_loss"][key] for key in ("epoch", "value")]))
        for e in tracker.evaluations:
            if e.grade == grade and e.iteration > 0:
                # The trainer records the loss after the update of epoch i - 1: the iterate
                # the tracker must see before the update of iteration i.
                assert abs(e.train_loss - losses[e.iteration - 1]) <= 1e-6 * e.train_loss
    first = tracker.evaluations[0].spectrum
    assert first.method == "exact" and len(first.smallest) == len(first.largest) == 3
    assert first.smallest == sorted(first.smallest) and first.largest[-1] >= first.smallest[-1]


def test_eigenvalue_rule_stops_a_grade_but_never_at_iteration_zero():
    task, objective = _task()
    # Every spectrum satisfies min eig < 2, so each grade ends at its first spectrum after 0.
    tracker = EigenTracker(0.05, 5, k=2, stop_below=2.0)
    summary = track_eigenvalues(task, objective, MGDL, _gd(100, 0.05), tracker)
    assert [g["stop_reason"] for g in summary["grades"]] == [EIG_STOP_REASON] * 2
    assert [g["iterations"] for g in summary["grades"]] == [5, 5]
    assert summary["boundaries"] == [5, 10]
    cumulative = [e["cumulative_iteration"] for e in summary["evaluations"]]
    assert cumulative == [0, 5, 5, 10]


def test_eigenvalue_rule_fires_when_gd_reaches_the_edge_of_stability():
    task, objective = _task()
    # A step size far above 2 / lambda_max: the smallest eigenvalue of I - eta*H is < -0.95
    # at the start, and the rule may stop only from the first spectrum after iteration 0.
    tracker = EigenTracker(3.0, 2, k=2, stop_below=-0.95)
    summary = track_eigenvalues(task, objective, MGDL, _gd(50, 3.0), tracker)
    first = summary["evaluations"][0]
    assert first["iteration"] == 0 and first["smallest"][0] < -0.95
    grade1 = summary["grades"][0]
    assert grade1["stop_reason"] == EIG_STOP_REASON and grade1["iterations"] == 2


def test_without_the_rule_training_runs_to_the_end():
    task, objective = _task()
    tracker = EigenTracker(0.05, 10, k=2)
    summary = track_eigenvalues(task, objective, MGDL, _gd(20, 0.05), tracker)
    assert [g["stop_reason"] for g in summary["grades"]] == ["max_epochs"] * 2
    assert summary["diverged"] is None and len(summary["evaluations"]) == 4

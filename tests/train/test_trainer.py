"""Trainer invariants: frozen grades, the feature cache, residual bookkeeping, SGDL, divergence."""

from __future__ import annotations

import math

import pytest
import torch

from mgdl_fast import BlockParams, RegressionTask, bind, fit, fit_regression
from mgdl_fast.errors import InputError
from mgdl_fast.tasks.regression import RegressionObjective
from mgdl_fast.train.early_stop import ValidationSmoothing
from mgdl_fast.train.features import FeatureCache, MemoryStore, freeze_grade
from mgdl_fast.train.state import TrainingState
from mgdl_fast.train.trainer import grade_shapes

from ..helpers import quick_train, small_camera, tiny_model


@pytest.fixture(scope="module")
def image():
    return small_camera(32)


def _fit(image, model_cfg, train_cfg, **kwargs):
    task = RegressionTask(image.pixels)
    objective = RegressionObjective(task)
    return task, objective, fit(task, objective, model_cfg, train_cfg, progress=False, **kwargs)


def test_psnr_rises_at_every_grade(image):
    result = fit_regression(image, tiny_model(grades=3), quick_train(), progress=False)
    psnrs = [r.final["test_psnr"] for r in result.records]
    assert len(psnrs) == 3
    assert all(b > a for a, b in zip(psnrs, psnrs[1:])), psnrs
    assert psnrs[0] > 12.0


def test_frozen_grades_stay_bit_identical(image):
    snapshots = []
    _, _, result = _fit(
        image,
        tiny_model(grades=3),
        quick_train(epochs=40),
        on_grade_end=lambda r: snapshots.append(r.model.grades[-1].flat.clone()),
    )
    for snapshot, params in zip(snapshots, result.model.grades):
        assert torch.equal(snapshot, params.flat)


def test_prediction_is_the_sum_of_grade_outputs_and_residuals_match(image):
    task, objective, result = _fit(image, tiny_model(grades=3), quick_train(epochs=40))
    model = result.model
    for name, split in task.splits.items():
        total = sum(
            (
                model.predict(split.x, num_grades=k + 1) - model.predict(split.x, num_grades=k)
                if k
                else model.predict(split.x, num_grades=1)
            )
            for k in range(len(model))
        )
        prediction = model.predict(split.x)
        torch.testing.assert_close(prediction, total, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(
            split.y - objective.residual[name], prediction, rtol=1e-5, atol=1e-5
        )
        loss = 0.5 * torch.mean((prediction.double() - split.y.double()) ** 2).item()
        assert math.isclose(result.records[-1].final[f"{name}_loss"], loss, rel_tol=1e-4)


def test_cached_features_equal_recomputed_ones(image):
    task, objective, result = _fit(image, tiny_model(grades=2), quick_train(epochs=20))
    first = result.model.grades[0]
    coords = FeatureCache({n: s.x for n, s in task.splits.items()})
    engine = bind(first.shape, device="cpu", rows=100)
    rows = {s: coords.rows(s) for s in ("train", "test")}
    store = MemoryStore(rows, first.shape.width, torch.float32, "cpu")
    cache, _, _ = freeze_grade(engine, first, coords, ("train", "test"), store)
    for split in ("train", "test"):
        grid = task.splits[split].x
        recomputed = torch.relu(
            torch.relu(grid @ first.weights[0] + first.biases[0]) @ first.weights[1]
            + first.biases[1]
        )
        torch.testing.assert_close(cache.get(split), recomputed, rtol=1e-5, atol=1e-6)


def test_training_without_the_cache_gives_the_same_model(image):
    _, _, cached = _fit(image, tiny_model(grades=3), quick_train(epochs=30))
    _, _, recomputed = _fit(
        image, tiny_model(grades=3), quick_train(epochs=30, feature_cache=False)
    )
    for a, b in zip(cached.model.grades, recomputed.model.grades):
        torch.testing.assert_close(a.flat, b.flat, rtol=1e-4, atol=1e-6)


def test_bf16_cache_changes_little(image):
    _, _, fp32 = _fit(image, tiny_model(grades=2), quick_train(epochs=60))
    _, _, bf16 = _fit(image, tiny_model(grades=2), quick_train(epochs=60, cache_dtype="bf16"))
    assert abs(fp32.records[-1].final["test_psnr"] - bf16.records[-1].final["test_psnr"]) < 0.5


def test_sgdl_is_one_deep_block_trained_end_to_end(image):
    result = fit_regression(
        image, tiny_model(kind="sgdl", grades=3), quick_train(epochs=120), progress=False
    )
    assert len(result.model) == 1 and len(result.records) == 1
    assert result.model.grades[0].shape.hidden_layers == 6
    assert result.records[0].epochs_run == 120
    assert result.records[0].final["test_psnr"] > 12.0


def test_resume_continues_after_the_last_grade(image):
    _, _, full = _fit(image, tiny_model(grades=3), quick_train(epochs=30))
    partial = TrainingState(type(full.model)(full.model.grades[:1]), full.records[:1])
    _, _, resumed = _fit(image, tiny_model(grades=3), quick_train(epochs=30), resume=partial)
    assert len(resumed.model) == 3 and len(resumed.records) == 3
    for a, b in zip(full.model.grades, resumed.model.grades):
        torch.testing.assert_close(a.flat, b.flat, rtol=1e-5, atol=1e-7)


class _PoisonedAtGrade(RegressionObjective):
    """Makes the gradient NaN from the given grade on: a stand-in for a blown-up learning rate."""

    def __init__(self, task, bad_grade):
        super().__init__(task)
        self.bad_grade, self.grade = bad_grade, 0

    def start_grade(self, engine, inputs, params):
        self.grade += 1
        super().start_grade(engine, inputs, params)

    def step(self, inputs, params, grad):
        loss = super().step(inputs, params, grad)
        if self.grade >= self.bad_grade:
            grad.flat.fill_(float("nan"))
        return loss


def test_divergence_stops_training_and_keeps_earlier_grades(image):
    task = RegressionTask(image.pixels)
    result = fit(
        task,
        _PoisonedAtGrade(task, bad_grade=2),
        tiny_model(grades=3),
        quick_train(epochs=50),
        progress=False,
    )
    assert result.diverged is not None and result.diverged.grade == 2
    assert len(result.model) == 1 and len(result.records) == 1
    assert "grade 2 diverged" in str(result.diverged)


def test_early_stopping_rule_matches_the_papers():
    rule = ValidationSmoothing(record_every=10, window=20, rel_tol=1e-4)
    assert [e for e in range(1000) if rule.is_check_epoch(e)] == [199, 399, 599, 799, 999]
    sgdl = ValidationSmoothing(10, 20, 1e-4, check_at_start=True)
    assert [e for e in range(600) if sgdl.is_check_epoch(e)] == [0, 200, 400]
    assert not rule.should_stop([1.0] * 20)
    assert not rule.should_stop([0.5] * 20)
    assert rule.should_stop([0.5] * 19 + [0.5 + 1e-6])
    assert math.isclose(rule.smoothed[-1], 0.5 + 1e-6 / 20)


def test_early_stopping_ends_a_grade(image):
    result = fit_regression(
        image, tiny_model(grades=1), quick_train(epochs=2000, rel_tol=1.0), progress=False
    )
    record = result.records[0]
    assert record.stop_reason == "early_stopping" and record.epochs_run == 400


def test_hook_runs_before_every_step_and_can_stop_a_grade(image):
    calls = []

    def hook(grade, epoch, params, inputs, objective):
        calls.append((grade, epoch))
        return "stopped by hook" if grade == 2 and epoch == 7 else None

    result = fit_regression(
        image, tiny_model(grades=2), quick_train(epochs=20), progress=False, hook=hook
    )
    assert calls[:20] == [(1, e) for e in range(20)] and calls[20:] == [(2, e) for e in range(8)]
    assert result.records[1].stop_reason == "stopped by hook"
    assert result.records[1].epochs_run == 7


@pytest.mark.parametrize("scheme", ["glorot", "he"])
def test_each_grade_starts_from_the_configured_init(image, scheme):
    starts = {}

    def hook(grade, epoch, params, inputs, objective):
        if epoch == 0:
            starts[grade] = params.flat.clone()

    train_cfg = quick_train(epochs=3, init=scheme, seed=5)
    fit_regression(image, tiny_model(grades=2), train_cfg, progress=False, hook=hook)
    shapes = grade_shapes(tiny_model(grades=2), 2, 1)
    for grade, shape in enumerate(shapes, start=1):
        expected = BlockParams.init(shape, seed=5, scheme=scheme).flat
        torch.testing.assert_close(starts[grade], expected, rtol=0, atol=0)


def test_unknown_init_is_refused():
    with pytest.raises(InputError, match="init must be one of"):
        quick_train(init="xavier")


def test_a_task_with_only_a_train_split_trains():
    """Front ends may bring a task with no validation or test split."""
    from mgdl_fast import FunctionTask
    from mgdl_fast.tasks import Split

    x = torch.linspace(0, 1, 64)[:, None]
    task = FunctionTask({"train": Split(x, torch.sin(6 * x), (64, 1))}, "sin(6x), train only")
    objective = RegressionObjective(task)
    result = fit(task, objective, tiny_model(grades=2), quick_train(epochs=30), progress=False)
    assert objective.splits == ("train",) and len(result.records) == 2
    assert set(result.records[-1].final) == {"train_loss", "train_psnr"}
    assert objective.reconstruction().shape == (64, 1)

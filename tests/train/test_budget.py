"""A fit under a time budget: each grade's epochs chosen from its measured speed.

The choice is checked with a fake clock that advances a fixed time per epoch (the objective's
step moves it), so every expected epoch count follows from arithmetic, never from timing.
"""

from __future__ import annotations

import io
import json

import pytest
import torch

from mgdl_fast import TrainConfig
from mgdl_fast.errors import InputError
from mgdl_fast.io.state_file import load_state, save_state
from mgdl_fast.tasks import RegressionObjective, RegressionTask
from mgdl_fast.train import budget as budgets
from mgdl_fast.train import fit
from mgdl_fast.train.budget import BudgetChoice, GradeBudget, choose_epochs
from mgdl_fast.train.progress import Progress
from mgdl_fast.train.state import Checkpointer

from ..distributed.launch import run_ranks
from ..helpers import quick_train, run_cli, small_camera, tiny_model
from .budget_ranks import budget_rank

# 150 epochs a grade at most; the grade is timed over epochs 1-10 (one record interval).
CONFIGURED = 150


class FakeClock:
    """A clock that moves ``per_epoch`` seconds whenever an objective steps."""

    def __init__(self, per_epoch: float):
        self.t, self.per_epoch = 1000.0, per_epoch

    def __call__(self) -> float:
        return self.t


class _TimedObjective(RegressionObjective):
    def __init__(self, task, clock: FakeClock):
        super().__init__(task)
        self.clock = clock

    def step(self, inputs, params, grad):
        self.clock.t += self.clock.per_epoch
        return super().step(inputs, params, grad)


@pytest.fixture(scope="module")
def image():
    return small_camera(16)


def _fit(image, monkeypatch, per_epoch, budget_s, *, kind="mgdl", grades=2, epochs=CONFIGURED,
         **kwargs):  # fmt: skip
    clock = FakeClock(per_epoch)
    monkeypatch.setattr(budgets, "now", clock)
    task = RegressionTask(image.pixels)
    cfg = quick_train(epochs=epochs, time_budget_s=budget_s, early_stopping=False)
    kwargs.setdefault("progress", False)
    return fit(task, _TimedObjective(task, clock), tiny_model(kind, grades), cfg, **kwargs)


def test_choose_epochs_keeps_fits_reduces_or_runs_the_least():
    common = {"done": 51, "configured": 300, "record_every": 10}
    # 0.1 s/epoch, 5.1 s spent: 249 more epochs fit in 30 s, all 300 in 40 s.
    assert choose_epochs(share_s=40.0, elapsed_s=5.1, seconds_per_epoch=0.1, **common) == (
        300, "fits",
    )  # fmt: skip
    assert choose_epochs(share_s=20.0, elapsed_s=5.1, seconds_per_epoch=0.1, **common) == (
        200, "reduced",
    )  # fmt: skip
    # Nothing left of the share: the first record at or after the 51 epochs run.
    assert choose_epochs(share_s=3.0, elapsed_s=5.1, seconds_per_epoch=0.1, **common) == (
        60, "least",
    )  # fmt: skip
    odd = {**common, "configured": 55}
    assert choose_epochs(share_s=0.0, elapsed_s=5.1, seconds_per_epoch=0.1, **odd) == (55, "least")
    assert choose_epochs(share_s=0.0, elapsed_s=0.0, seconds_per_epoch=0.0, **common)[0] == 300


def test_grade_budget_times_one_record_interval_and_shares_what_is_left(monkeypatch):
    budget = GradeBudget(60.0, 20.0, 4, 300, 10, started=100.0)
    assert budget.share_s == 10.0
    assert budget.decide_at(0) == 10 and budget.decide_at(37) == 50
    assert GradeBudget(60.0, 0, 1, 300, 100, 0.0).decide_at(0) == 100
    monkeypatch.setattr(budgets, "now", lambda: 101.1)
    choice = budget.choose(0, 100.1, 10)  # 0.1 s/epoch over epochs 1-10, 1.1 s in the grade
    assert choice.epochs == 100 and choice.measured == (1, 10) and choice.configured == 300
    assert choice.seconds_per_epoch == pytest.approx(0.1)
    assert "300 epochs would take 30.0 s" in choice.reason and "share 10.0 s" in choice.reason
    assert BudgetChoice.from_dict(choice.to_dict(), "x") == choice
    assert GradeBudget(60.0, 80.0, 2, 300, 10, 100.0).share_s == 0.0


@pytest.mark.parametrize(
    "data", [[1], {"epochs": 3}, {**BudgetChoice(9, 5, 1.0, None, None, "r").to_dict()}]
)
def test_a_malformed_recorded_choice_is_one_line(data):
    with pytest.raises(InputError, match="^where is not a time-budget choice|^where must be"):
        BudgetChoice.from_dict(data, "where")


@pytest.mark.parametrize("value", [0, -1.0, float("inf"), float("nan"), True, "60"])
def test_the_budget_must_be_a_finite_positive_number(value):
    with pytest.raises(InputError, match="time budget must be a finite number of seconds > 0"):
        TrainConfig(time_budget_s=value)


def test_each_grade_chooses_from_its_speed_and_records_why(image, monkeypatch, tmp_path):
    stream, log = io.StringIO(), tmp_path / "progress.jsonl"
    progress = Progress(stream=stream, log_path=log)
    # 1 s/epoch, 200 s for 2 grades: grade 1's share is 100 s (100 epochs); grade 2 gets what
    # grade 1 left, 100 s.
    result = _fit(image, monkeypatch, 1.0, 200.0, progress=progress)
    assert [r.epochs_run for r in result.records] == [100, 100]
    assert [r.time_s for r in result.records] == [100.0, 100.0]
    first = result.records[0].settings["budget"]
    assert first["epochs"] == 100 and first["configured"] == CONFIGURED
    assert first["measured"] == [1, 10] and first["seconds_per_epoch"] == 1.0
    assert "share 100.0 s of the 200 s budget" in first["reason"]
    assert "grade 1/2: time budget: 100 of 150 epochs" in stream.getvalue()
    events = [json.loads(line) for line in log.read_text().splitlines()]
    limits = [e for e in events if e["event"] == "limit"]
    assert [e["epochs"] for e in limits] == [100, 100] and limits[0]["budget"] == first


def test_sgdl_spends_its_budget_in_one_grade(image, monkeypatch):
    result = _fit(image, monkeypatch, 1.0, 60.0, kind="sgdl", grades=3)
    assert result.records[0].epochs_run == 60
    # 11 epochs run when the choice is taken already exceed 5 s: the next record, epoch 20.
    least = _fit(image, monkeypatch, 1.0, 5.0, kind="sgdl", grades=3)
    assert least.records[0].epochs_run == 20
    assert least.records[0].settings["budget"]["reason"].startswith("even the least, 20 epochs")


def test_a_grade_that_ends_before_its_timing_keeps_its_epochs(image, monkeypatch):
    clock = FakeClock(1.0)
    monkeypatch.setattr(budgets, "now", clock)
    task = RegressionTask(image.pixels)
    cfg = quick_train(epochs=10, time_budget_s=1.0)
    result = fit(task, _TimedObjective(task, clock), tiny_model(grades=1), cfg, progress=False)
    budget = result.records[0].settings["budget"]
    assert result.records[0].epochs_run == 10 and budget["epochs"] == 10
    assert budget["seconds_per_epoch"] is None and "before the timing does" in budget["reason"]


def test_a_budget_that_fits_changes_nothing(image):
    task = RegressionTask(image.pixels)
    runs = [
        fit(task, RegressionObjective(task), tiny_model(grades=2),
            quick_train(epochs=80, time_budget_s=budget_s), progress=False)
        for budget_s in (None, 1e9)
    ]  # fmt: skip
    plain, budgeted = runs
    assert "budget" not in plain.records[0].settings
    assert budgeted.records[0].settings["budget"]["epochs"] == 80
    for a, b in zip(plain.model.grades, budgeted.model.grades):
        assert torch.equal(a.flat, b.flat)


def test_resume_keeps_the_recorded_choice(image, monkeypatch, tmp_path):
    """A grade saved after its choice continues with it, on a clock three times slower."""
    states = []
    model, cfg = tiny_model(grades=2), quick_train(epochs=CONFIGURED, time_budget_s=200.0)
    config = {"model": model.to_dict(), "train": cfg.to_dict(), "task": {"name": "regression"},
              "image": {"channels": 1}}  # fmt: skip

    def keep(state):
        if not states:
            save_state(tmp_path / "state.safetensors", state, config)
            states.append(state.current.epoch)

    checkpointer = Checkpointer(keep, every_epochs=80)
    full = _fit(image, monkeypatch, 1.0, 200.0, checkpointer=checkpointer)
    assert states == [79]
    saved, _ = load_state(tmp_path / "state.safetensors", torch.device("cpu"))
    assert saved.current.budget is not None and saved.current.budget.epochs == 100
    resumed = _fit(image, monkeypatch, 3.0, 200.0, resume=saved)
    assert resumed.records[0].epochs_run == 100
    assert resumed.records[0].settings["budget"] == full.records[0].settings["budget"]
    assert torch.equal(resumed.model.grades[0].flat, full.model.grades[0].flat)
    # Grade 2 times itself on the slower clock: 80 + 20 x 3 s spent leave it 60 s, 33 s of
    # which its first 11 epochs took: 9 more fit, 20 in all.
    assert resumed.records[1].epochs_run == 20
    # Epochs lowered on resume below the choice bound the grade in progress.
    lowered = _fit(image, monkeypatch, 1.0, 200.0, grades=1, epochs=90, resume=saved)
    assert lowered.records[0].epochs_run == 90


def test_the_quick_preset_fit_records_its_budget(tiny_png, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(["fit", tiny_png, "--out", out, "--grades", "2", "--width", "8"], capsys)
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["train"]["time_budget_s"] == 80.0
    for grade in metrics["grades"]:
        budget = grade["settings"]["budget"]
        assert budget["configured"] == 300 and grade["epochs_run"] <= budget["epochs"] <= 300
        assert budget["reason"] and f"grade {grade['grade']}/2: time budget:" in err
    given = tmp_path / "given"
    code, _, err = run_cli(["fit", tiny_png, "--out", given, "--epochs", "20", "--grades", "1",
                            "--width", "8", "--quiet"], capsys)  # fmt: skip
    metrics = json.loads((given / "metrics.json").read_text())
    assert code == 0 and metrics["config"]["train"]["time_budget_s"] is None
    assert "budget" not in metrics["grades"][0]["settings"]


def test_every_rank_takes_rank_0s_choice(tmp_path):
    """Two gloo ranks whose clocks disagree (``budget_ranks``) run the same epochs."""
    assert run_ranks(budget_rank, 2, str(tmp_path)) == [0, 0]
    rank0, rank1 = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert rank0["epochs"] == rank1["epochs"] == [20, 20]
    assert rank0["budget"] == rank1["budget"] and rank0["budget"][0]["measured"] == [1, 4]
    for a, b in zip(rank0["params"], rank1["params"], strict=True):
        assert torch.equal(a, b)

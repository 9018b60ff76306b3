"""Paper 2's trained study (tiny sizes): the three kinds of run, their grade-wise errors and
curves, the summaries over seeds, and ``mgdl-fast approx --study``'s argument checks."""

from __future__ import annotations

import json

import pytest
import torch

from mgdl_fast.cli import main
from mgdl_fast.experiments.construct.targets import TRAINED, function_task
from mgdl_fast.experiments.construct.trained import (
    Setup,
    first_non_decreasing_grade,
    run,
    summarize,
)

TINY = Setup(grades=2, width=8, layers=1, epochs=40, lr=3e-3, record_every=10)


@pytest.fixture(scope="module")
def task():
    torch.set_num_threads(1)
    return function_task(TRAINED["sin32"], 6, 128)


def test_targets_sample_their_functions():
    task = function_task(TRAINED["osc2d"], 3, 16)
    train = task.splits["train"]
    assert train.x.shape == (64, 2) and task.splits["test"].x.shape == (256, 2)
    x = train.x.double()
    assert torch.allclose(train.y[:, 0].double(), TRAINED["osc2d"].f(x), atol=1e-6)


def test_runs_report_every_grade_and_their_curves(task):
    runs = {kind: run(task, TINY, kind, seed=0) for kind in ("mgdl", "sgdl", "joint")}
    assert [len(runs[k]["grades"]) for k in ("mgdl", "sgdl", "joint")] == [2, 1, 2]
    for kind in ("mgdl", "sgdl", "joint"):
        assert runs[kind]["curve"]["epoch"] == list(range(0, 80, 10))
        assert runs[kind]["onsets"] == ([0] if kind == "sgdl" else [0, 40])
    for row in runs["mgdl"]["grades"]:
        assert 0 < row["train_L2"] <= row["train_Linf"] and 0 < row["test_L2"] <= row["test_Linf"]
    # Before grade 2 is added, no-freezing MGDL is MGDL: the same init and Adam steps.
    mgdl, joint = runs["mgdl"]["grades"][0], runs["joint"]["grades"][0]
    assert joint["train_L2"] == pytest.approx(mgdl["train_L2"], rel=1e-3)


def test_summaries_over_seeds():
    runs = [{"grades": [{"grade": 1, "train_L2": v}, {"grade": 2, "train_L2": v / 2}]}
            for v in (1.0, 3.0)]  # fmt: skip
    summary = summarize(runs)
    assert summary[0]["train_L2"] == {"mean": 2.0, "std": 1.0}
    assert first_non_decreasing_grade(summary) is None
    runs[0]["grades"][1]["train_L2"] = 5.0
    assert first_non_decreasing_grade(summarize(runs)) == 2


@pytest.mark.parametrize(
    "argv",
    [["approx"], ["approx", "--setting", "1", "--study", "construct"],
     ["approx", "--study", "trained", "--seeds", "a,b"]],
)  # fmt: skip
def test_study_argument_errors(argv, capsys):
    assert main(argv) == 2
    assert "mgdl-fast: error:" in capsys.readouterr().err


def test_a_study_keeps_a_users_files_and_titles_its_seeds(tmp_path, capsys, monkeypatch):
    from mgdl_fast.experiments.construct import plots, study

    from ..helpers import run_cli

    monkeypatch.setattr(study, "MAIN", TINY)
    monkeypatch.setattr(study, "SAMPLING", {1: (5, 64), 2: (3, 16)})
    real_study, real_figure, titles = study.trained_study, plots.curves_figure, []
    monkeypatch.setattr(study, "trained_study", lambda seeds: real_study(seeds, ("sin32",)))

    def figure(panels, path, title):
        titles.append(title)
        real_figure(panels, path, title)

    monkeypatch.setattr(plots, "curves_figure", figure)
    out = tmp_path / "study"
    out.mkdir()
    (out / "trained.json").write_text("mine")
    args = ["approx", "--study", "trained", "--seeds", "3,5", "--out", out, "--threads", "1"]
    code, _, err = run_cli(args, capsys)
    assert code == 2 and "trained.json exists; pass --overwrite" in err, err
    assert (out / "trained.json").read_text() == "mine" and not titles
    (out / "trained_curves.png").symlink_to(tmp_path / "elsewhere.png")
    code, _, err = run_cli([*args, "--overwrite"], capsys)
    assert code == 2 and "trained_curves.png is a symbolic link" in err and err.count("\n") == 1
    assert not (tmp_path / "elsewhere.png").exists() and not titles
    (out / "trained_curves.png").unlink()
    code, _, err = run_cli([*args, "--overwrite"], capsys)
    assert code == 0, err
    assert json.loads((out / "trained.json").read_text())["seeds"] == [3, 5]
    assert titles == ["train loss, seeds 3, 5"]
    assert (out / "trained_curves.png").read_bytes()[:4] == b"\x89PNG"

"""Per-grade settings (lists for lr, epochs, width, layers), adaptive grade counts and the
NeurIPS 2024 colour preset."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest

from mgdl_fast import ModelConfig, RegressionTask, TrainConfig, fit
from mgdl_fast.tasks.regression import RegressionObjective
from mgdl_fast.train.trainer import grade_shapes

from ..helpers import resolved, run_cli, small_camera

TINY = ["--epochs", "20", "--width", "16", "--quiet"]


def test_per_grade_lists_reach_every_grade(tiny_png, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["fit", tiny_png, "--out", out, "--grades", "3", "--lr", "1e-2,5e-3,2e-3",
            "--epochs", "20,10,30", "--width", "16,24,8", "--layers", "2,1,3",
            "--encoding", "none", "--quiet"]  # fmt: skip
    assert run_cli(args, capsys)[0] == 0
    grades = json.loads((out / "metrics.json").read_text())["grades"]
    assert [g["settings"]["lr"] for g in grades] == [1e-2, 5e-3, 2e-3]
    assert [g["epochs_run"] for g in grades] == [20, 10, 30]
    assert [(g["shape"]["in_dim"], g["shape"]["width"], g["shape"]["hidden_layers"])
            for g in grades] == [(2, 16, 2), (16, 24, 1), (24, 8, 3)]  # fmt: skip


def test_a_short_list_repeats_its_last_entry_and_a_long_one_is_refused(tiny_png, tmp_path, capsys):
    cfg = ModelConfig(grades=4, width=[32, 16])
    assert [s.width for s in grade_shapes(cfg, 2, 1)] == [32, 16, 16, 16]
    code, _, err = run_cli(["fit", tiny_png, "--out", tmp_path / "o", "--grades", "2", "--lr",
                            "1e-3,1e-3,1e-3", *TINY], capsys)  # fmt: skip
    assert code == 2 and "lr lists 3 values for 2 grades" in err and err.count("\n") == 1
    code, _, err = run_cli(["fit", tiny_png, "--out", tmp_path / "p", "--model", "sgdl",
                            "--width", "16,8", "--quiet"], capsys)  # fmt: skip
    assert code == 2 and "per-grade width lists apply to MGDL only" in err


def test_adaptive_grades_stop_when_the_gain_is_small_and_say_why():
    task = RegressionTask(small_camera(16).pixels)
    model = ModelConfig(grades="auto", width=16, max_grades=6, min_gain_db=1e9)
    result = fit(task, RegressionObjective(task), model, TrainConfig(epochs=20, lr=1e-2,
                 device="cpu"), progress=False)  # fmt: skip
    assert len(result.records) == 2
    assert result.grades_stop.startswith("grade 2 raised the validation PSNR by")
    model = ModelConfig(grades="auto", width=16, max_grades=3, min_gain_db=-1e9)
    result = fit(task, RegressionObjective(task), model, TrainConfig(epochs=20, lr=1e-2,
                 device="cpu"), progress=False)  # fmt: skip
    assert len(result.records) == 3 and result.grades_stop == "reached max_grades 3"


def test_adaptive_grades_from_the_cli_record_why_they_stopped(tiny_png, tmp_path, capsys):
    out = tmp_path / "auto"
    args = ["fit", tiny_png, "--out", out, "--grades", "auto", "--max-grades", "3", *TINY]
    assert run_cli(args, capsys)[0] == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 1 <= len(metrics["grades"]) <= 3 and metrics["grades_stop"]


def test_adaptive_grades_need_a_validation_split(tiny_png, tmp_path, capsys):
    code, _, err = run_cli(["fit", tiny_png, "--out", tmp_path / "o", "--task", "denoise",
                            "--grades", "auto", *TINY], capsys)  # fmt: skip
    assert code == 2 and "has no val split" in err


def test_the_colour_preset(tmp_path, capsys):
    config = resolved("--preset", "colour")
    assert config["model"] == {**config["model"], "grades": 4, "width": 256, "layers": 3}
    assert config["train"]["lr"] == [1e-3, 1e-3, 5e-4, 5e-4]
    assert config["train"]["epochs"] == 10_000
    rgb = tmp_path / "rgb.png"
    iio.imwrite(rgb, (np.random.default_rng(0).random((8, 8, 3)) * 255).astype(np.uint8))
    gray = tmp_path / "gray.png"
    iio.imwrite(gray, np.zeros((8, 8), np.uint8))
    code, _, err = run_cli(["fit", gray, "--preset", "colour", "--out", tmp_path / "g"], capsys)
    assert code == 2 and "--preset colour is for colour images" in err
    code, _, err = run_cli(["fit", gray, "--preset", "colour", "--task", "denoise", "--out",
                            tmp_path / "d"], capsys)  # fmt: skip
    assert code == 2 and "applies to --task regression" in err
    code, _, _ = run_cli(["fit", rgb, "--preset", "colour", "--epochs", "3", "--width", "16",
                          "--out", tmp_path / "c", "--quiet"], capsys)  # fmt: skip
    assert code == 0


@pytest.mark.parametrize("text", ["1e-3,x", "1e-3,,2e-3"])
def test_bad_lists_are_one_line(tiny_png, tmp_path, capsys, text):
    with pytest.raises(SystemExit) as info:
        run_cli(["fit", tiny_png, "--lr", text], capsys)
    assert info.value.code == 2

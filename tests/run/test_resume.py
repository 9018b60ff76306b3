"""Resume rules of the run service: the run's image is found again whatever its format, and
every setting given again is applied to the grades to come or refused, never ignored."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ..helpers import run_cli, tiny_pattern

TINY = ["--epochs", "30", "--width", "16", "--quiet"]


def test_resume_finds_a_zarr_image_without_being_given_it(tmp_path, capsys):
    zarr = pytest.importorskip("zarr")
    image = tmp_path / "img.zarr"
    store = zarr.open(str(image), mode="w", shape=(16, 16), chunks=(8, 8), dtype=np.uint8)
    store[:] = tiny_pattern()
    out = tmp_path / "run"
    assert run_cli(["fit", image, "--out", out, "--grades", "1", *TINY], capsys)[0] == 0
    code, _, err = run_cli(["fit", "--out", out, "--resume", "--grades", "2", *TINY], capsys)
    assert code == 0, err
    assert len(json.loads((out / "metrics.json").read_text())["grades"]) == 2


def test_a_time_budget_given_on_resume_applies_to_the_grades_to_come(tiny_png, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["fit", tiny_png, "--out", out, "--grades", "1", *TINY], capsys)[0] == 0
    code, _, err = run_cli(["fit", "--out", out, "--resume", "--grades", "2", "--time-budget",
                            "1000s", *TINY], capsys)  # fmt: skip
    assert code == 0 and "--time-budget 1000.0 applies from grade 2 on" in err, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["train"]["time_budget_s"] == 1000.0
    assert ["budget" in g["settings"] for g in metrics["grades"]] == [False, True]

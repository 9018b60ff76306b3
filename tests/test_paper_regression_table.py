"""bench/paper_regression_table.py: run folders with and without an epochs cap, seed spreads."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "bench" / "paper_regression_table.py"


def _table_module():
    spec = importlib.util.spec_from_file_location("paper_regression_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _write_run(folder: Path, name: str, test: float, val: float, status: str = "complete"):
    grade = {"grade": 1, "final": {"test_psnr": test, "val_psnr": val}, "epochs_run": 2000,
             "stop_reason": "max_epochs", "time_s": 10.0}  # fmt: skip
    (folder / name).mkdir()
    metrics = {"status": status, "grades": [grade], "total_time_s": 10.0}
    (folder / name / "metrics.json").write_text(json.dumps(metrics))


def test_runs_are_keyed_by_budget_and_seeds_are_summarised(tmp_path):
    table = _table_module()
    _write_run(tmp_path, "camera_mgdl_s0", 25.0, 23.0)
    _write_run(tmp_path, "camera_sgdl_s0", 24.0, 23.5)
    for seed, (mgdl, sgdl) in enumerate([(22.0, 21.0), (23.0, 21.0), (21.0, 21.5)]):
        _write_run(tmp_path, f"camera_mgdl_s{seed}_e2000", mgdl, 20.0)
        _write_run(tmp_path, f"camera_sgdl_s{seed}_e2000", sgdl, 20.5)
    _write_run(tmp_path, "camera_mgdl_s3_e2000", 30.0, 30.0, status="interrupted")
    runs = table.load_runs(tmp_path)
    assert ("camera", 10_000, "mgdl", 0) in runs and ("camera", 2000, "sgdl", 2) in runs
    rows = table.seed_table(runs).splitlines()[2:]
    assert rows[0].startswith("| camera | 10,000 | 0 | 25.000")
    # Gains +1, +2, -0.5: mean +0.833; the interrupted seed 3 has no pair and is left out.
    assert rows[1] == (
        "| camera | 2,000 | 0, 1, 2 | 22.000 (21.000 to 23.000) | 21.167 (21.000 to 21.500) | "
        "+0.833 (-0.500 to +2.000) | -0.500 (-0.500 to -0.500) |"
    )
    assert "| camera | 2,000 | 3 | - | - | - |" in table.gain_table(runs)

"""Runs you can trust: kill -9 anywhere (also inside a write) and resume bit for bit; protected
run directories; resume semantics; damage refused; every failure as one line and exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from mgdl_fast.io import atomic
from mgdl_fast.io.rundir import RunDirectory

from ..helpers import run_cli

TINY = ["--epochs", "30", "--grades", "2", "--width", "16", "--quiet"]
TASKS = {
    "regression": [],
    "denoise": ["--task", "denoise", "--layers", "2", "--record-every", "10"],
}


def _fit_subprocess(args, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    cmd = [sys.executable, "-m", "mgdl_fast", *map(str, args)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _model(out):
    return load_file(str(out / "model.safetensors"))


def _same_run(a, b):
    ta, tb = _model(a), _model(b)
    assert set(ta) == set(tb)
    assert {name for name in ta if name.startswith("grade")} == {"grade1", "grade2"}
    assert all(torch.equal(ta[k], tb[k]) for k in ta)
    np.testing.assert_array_equal(
        np.load(a / "reconstruction.npy"), np.load(b / "reconstruction.npy")
    )


@pytest.mark.slow
@pytest.mark.parametrize("task", sorted(TASKS))
def test_kill_9_anywhere_then_resume_equals_the_uninterrupted_run(task, tiny_png, tmp_path, capsys):
    args = ["fit", tiny_png, *TINY, *TASKS[task], "--checkpoint-every", "7"]
    assert run_cli([*args, "--out", tmp_path / "full"], capsys)[0] == 0
    # Mid-grade checkpoint writes (the 3rd: grade 1; the 6th: grade 2), a grade's exports, and
    # the manifest itself: each crash lands between a temporary file and its rename.
    crashes = ["state-000003.safetensors", "state-000006.safetensors", "model.json:2",
               "manifest.json:4"]  # fmt: skip
    for n, crash in enumerate(crashes):
        out = tmp_path / f"cut{n}"
        killed = _fit_subprocess([*args, "--out", out], {atomic.CRASH_ENV: crash})
        assert killed.returncode == -9, (crash, killed.stderr[-500:])
        assert list(out.glob(".*.tmp*")), "the crash did not land inside a write"
        code, _, err = run_cli(["fit", "--out", out, "--resume", "--quiet"], capsys)
        assert code == 0, (crash, err)
        _same_run(tmp_path / "full", out)


def test_an_existing_run_is_refused_without_resume_or_overwrite(tiny_png, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["fit", tiny_png, "--out", out, *TINY], capsys)[0] == 0
    code, _, err = run_cli(["fit", tiny_png, "--out", out, *TINY], capsys)
    assert code == 2 and "already holds a run" in err and "--resume" in err
    assert "--overwrite" in err and err.count("\n") == 1
    stale = out / "grade_2.png"
    assert stale.is_file()
    code, _, _ = run_cli(["fit", tiny_png, "--out", out, "--overwrite", *TINY[:2], "--grades",
                          "1", "--width", "16", "--quiet"], capsys)  # fmt: skip
    assert code == 0 and not stale.exists()
    assert [name for name in _model(out) if name.startswith("grade")] == ["grade1"]


def test_a_second_process_on_the_same_directory_is_refused(tiny_png, tmp_path, capsys):
    held = RunDirectory(tmp_path / "run", mode="new")
    try:
        code, _, err = run_cli(["fit", tiny_png, "--out", tmp_path / "run", *TINY], capsys)
    finally:
        held.close()
    assert code == 2 and "in use by another mgdl-fast process" in err and err.count("\n") == 1
    assert f"pid {os.getpid()}" in err


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: (p.write_text("x"), p)[1], "is a file, not a directory"),
        (lambda p: (p.write_text("x"), p / "sub")[1], "cannot create --out"),
        (lambda p: "/proc/self", "is not writable"),
    ],
    ids=["out-is-a-file", "cannot-be-created", "read-only"],
)
def test_unusable_output_directories(tiny_png, tmp_path, capsys, make, message):
    out = make(tmp_path / "target")
    code, _, err = run_cli(["fit", tiny_png, "--out", out, *TINY], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err


@pytest.fixture
def finished(tiny_png, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["fit", tiny_png, "--out", out, *TINY], capsys)[0] == 0
    return out


def test_resume_refuses_options_that_change_finished_grades(finished, capsys):
    code, _, err = run_cli(["fit", "--out", finished, "--resume", "--width", "32", "--seed",
                            "3", "--quiet"], capsys)  # fmt: skip
    assert code == 2 and err.count("\n") == 1
    assert "--width (16 -> 32)" in err and "--seed (0 -> 3)" in err


def test_resume_grows_a_run_and_applies_new_settings_to_new_grades(finished, capsys):
    code, _, err = run_cli(["fit", "--out", finished, "--resume", "--grades", "3", "--lr",
                            "5e-4", "--quiet"], capsys)  # fmt: skip
    assert code == 0 and "--lr 0.0005 applies from grade 3 on" in err
    metrics = json.loads((finished / "metrics.json").read_text())
    assert [g["settings"]["lr"] for g in metrics["grades"]] == [1e-3, 1e-3, 5e-4]
    code, _, err = run_cli(["fit", "--out", finished, "--resume", "--grades", "2"], capsys)
    assert code == 2 and "--grades 2 is below the 3 grades already trained" in err


def test_resume_finds_the_image_from_another_directory_and_checks_it(
    tiny_png, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tiny_png.parent)
    out = tmp_path / "rel"
    assert run_cli(["fit", tiny_png.name, "--out", out, *TINY[:2], "--grades", "1", "--width",
                    "16", "--quiet"], capsys)[0] == 0  # fmt: skip
    monkeypatch.chdir(tmp_path.parent)
    code, _, err = run_cli(["fit", "--out", out, "--resume", "--grades", "2", "--quiet"], capsys)
    assert code == 0, err
    other = tmp_path / "other.png"
    import imageio.v3 as iio

    iio.imwrite(other, np.zeros((16, 16), np.uint8))
    code, _, err = run_cli(["fit", other, "--out", out, "--resume", "--quiet"], capsys)
    assert code == 2 and "is not the image this run was trained on" in err


def test_a_broken_manifest_and_changed_files_are_refused(finished, capsys):
    model_json = finished / "model.json"
    model_json.write_text(model_json.read_text().replace('"width": 16', '"width": 32'))
    code, _, err = run_cli(["predict", finished], capsys)
    assert code == 2 and "does not match" in err and err.count("\n") == 1
    (finished / "manifest.json").write_text("{not json")
    code, _, err = run_cli(["fit", "--out", finished, "--resume", "--quiet"], capsys)
    assert code == 2 and "cannot read" in err and "manifest.json" in err


def test_nan_weights_are_refused(finished, tmp_path, capsys):
    tensors = _model(finished)
    tensors["grade2"][3] = float("nan")
    bad = tmp_path / "bad"
    bad.mkdir()
    save_file(tensors, str(bad / "model.safetensors"))
    (bad / "model.json").write_text((finished / "model.json").read_text())
    code, _, err = run_cli(["predict", bad / "model.safetensors"], capsys)
    assert code == 2 and "grade 2 has NaN or infinite weights" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seed", "99999999999999999999"], "seed must be an integer from 0 to 2**63 - 1"),
        (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1"),
    ],
)
def test_bad_run_options(tiny_png, tmp_path, capsys, extra, message):
    code, _, err = run_cli(["fit", tiny_png, "--out", tmp_path / "o", *TINY, *extra], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err


@pytest.mark.parametrize(
    "out, message",
    [
        ("missing/r.png", "does not exist"),
        ("render", "unsupported extension (none)"),
        ("r.txt", "unsupported extension .txt"),
    ],  # fmt: skip
)
def test_bad_predict_outputs(finished, capsys, out, message):
    code, _, err = run_cli(["predict", finished, "--out", finished / out], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_predict_writes_tiff_and_npy_and_shows_progress(finished, capsys):
    code, _, err = run_cli(["predict", finished, "--size", "20", "12", "--out",
                            finished / "r.tif", "--npy"], capsys)  # fmt: skip
    assert code == 0 and "render 20x12" in err
    import tifffile

    tif = tifffile.imread(finished / "r.tif")
    assert tif.shape == (20, 12, 1) and tif.dtype == np.float32
    np.testing.assert_array_equal(np.load(finished / "r.npy"), tif)


def test_a_full_disk_is_one_line(tiny_png, tmp_path, capsys, monkeypatch):
    original = atomic.atomic_write

    def full(path, write, **options):
        if str(path).endswith("grade_2.png"):
            raise atomic.WriteError(f"cannot write {path}: No space left on device")
        return original(path, write, **options)

    monkeypatch.setattr(atomic, "atomic_write", full)
    code, _, err = run_cli(["fit", tiny_png, "--out", tmp_path / "o", *TINY], capsys)
    assert code == 2 and "No space left on device" in err and err.count("\n") == 2
    manifest = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert "grade_2.png" not in manifest["files"] and "grade_1.png" in manifest["files"]


def test_progress_log_and_lines_when_not_a_terminal(finished, capsys):
    events = [json.loads(line) for line in (finished / "progress.jsonl").read_text().splitlines()]
    kinds = {e["event"] for e in events}
    assert {"start", "record", "grade_end"} <= kinds
    records = [e for e in events if e["event"] == "record"]
    assert records[0]["grade"] == 1 and "train_loss" in records[0]

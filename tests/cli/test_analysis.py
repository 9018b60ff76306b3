"""``mgdl-fast analyze eig`` and ``mgdl-fast sweep-lr`` end to end at tiny sizes, and every bad
input as a one-line error with exit status 2."""

from __future__ import annotations

import json
import os

import pytest

from ..helpers import run_cli

EIG_TINY = ["--iterations", "30", "--interval", "10", "--k", "3", "--grades", "2", "--quiet"]
SWEEP_TINY = ["--epochs", "20", "--grades", "2", "--width", "8", "--quiet"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_eig_on_synthetic_data_writes_json_and_png(tmp_path, capsys):
    out = tmp_path / "eig"
    code, stdout, stderr = run_cli(
        ["analyze", "eig", "synthetic:1", "--width", "8", "--out", out, *EIG_TINY], capsys
    )
    assert code == 0, stderr
    assert (out / "eigenvalues.png").stat().st_size > 1000
    mgdl = json.loads((out / "eig_mgdl.json").read_text())
    sgdl = json.loads((out / "eig_sgdl.json").read_text())
    assert [e["cumulative_iteration"] for e in mgdl["evaluations"]] == [0, 10, 20, 30, 40, 50]
    assert [e["cumulative_iteration"] for e in sgdl["evaluations"]] == [0, 10, 20]
    assert mgdl["config"]["eta"] == 6e-2 and sgdl["config"]["eta"] == 5e-3
    assert mgdl["config"]["eig_stop"] is None and mgdl["config"]["train"]["init"] == "he"
    assert [g["params"] for g in mgdl["grades"]] == [8 + 8 + 8 + 1, 64 + 8 + 8 + 1]
    assert sgdl["grades"][0]["params"] == 8 + 8 + 72 + 9
    assert all(len(e["smallest"]) == 3 for e in mgdl["evaluations"])
    assert "torch" in mgdl["environment"] and "MGDL" in stdout and "SGDL" in stdout

    png = tmp_path / "again.png"
    code, _, stderr = run_cli(["analyze", "plot", out / "eig_sgdl.json", "--out", png], capsys)
    assert code == 0 and png.stat().st_size > 1000, stderr


def test_eig_and_plot_keep_a_users_files_and_never_write_through_a_link(tmp_path, capsys):
    out = tmp_path / "eig"
    out.mkdir()
    (out / "eig_sgdl.json").write_text("my notes")
    args = ["analyze", "eig", "synthetic:1", "--width", "8", "--out", out, *EIG_TINY]
    code, _, stderr = run_cli(args, capsys)
    assert code == 2 and "eig_sgdl.json exists; pass --overwrite" in stderr, stderr
    assert os.listdir(out) == ["eig_sgdl.json"]
    assert (out / "eig_sgdl.json").read_text() == "my notes"
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_text("not a figure")
    (out / "eigenvalues.png").symlink_to(elsewhere)
    code, _, stderr = run_cli([*args, "--overwrite"], capsys)
    assert code == 2 and "eigenvalues.png is a symbolic link" in stderr and stderr.count("\n") == 1
    (out / "eigenvalues.png").unlink()
    assert run_cli([*args, "--overwrite"], capsys)[0] == 0
    assert json.loads((out / "eig_sgdl.json").read_text())["config"]["model"]["kind"] == "sgdl"
    assert elsewhere.read_text() == "not a figure"
    plot = ["analyze", "plot", out / "eig_mgdl.json", "--out", elsewhere]
    code, _, stderr = run_cli(plot, capsys)
    assert code == 2 and "elsewhere.png exists; pass --overwrite" in stderr
    assert run_cli([*plot, "--overwrite"], capsys)[0] == 0 and elsewhere.stat().st_size > 1000


def test_eig_under_adam_writes_the_preconditioned_spectra(tmp_path, capsys):
    out = tmp_path / "adam"
    args = ["analyze", "eig", "synthetic:1", "--optimizer", "adam", "--width", "8", "--eta", "1e-2"]
    code, stdout, stderr = run_cli([*args, "--out", out, *EIG_TINY], capsys)
    assert code == 0, stderr
    assert (out / "adam_eigenvalues.png").stat().st_size > 1000
    mgdl = json.loads((out / "eig_adam_mgdl.json").read_text())
    sgdl = json.loads((out / "eig_adam_sgdl.json").read_text())
    assert [e["cumulative_iteration"] for e in mgdl["evaluations"]] == [10, 20, 40, 50]
    assert [e["cumulative_iteration"] for e in sgdl["evaluations"]] == [10, 20]
    config = mgdl["config"]
    assert config["optimizer"] == "adam" and config["train"]["optimizer"] == "adam"
    assert config["eta"] == 1e-2 and config["beta1"] == 0.9 and config["eig_stop"] is None
    assert config["train"]["precision"] == "fp32"
    first = mgdl["evaluations"][0]
    assert first["threshold"] == pytest.approx(38 / 1e-2)
    assert len(first["largest"]) == 3 and first["hessian"]["largest"]
    assert "threshold" in stdout and not (out / "eig_mgdl.json").exists()

    png = tmp_path / "again.png"
    code, _, stderr = run_cli(["analyze", "plot", out / "eig_adam_mgdl.json", "--out", png], capsys)
    assert code == 0 and png.stat().st_size > 1000, stderr


def test_plot_refuses_files_that_are_not_eig_runs(tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text('{"rows": []}')
    for path, message in ((tmp_path / "missing.json", "cannot read"), (other, "not an eig_")):
        code, _, stderr = run_cli(["analyze", "plot", path, "--out", tmp_path / "p.png"], capsys)
        assert code == 2 and stderr.count("\n") == 1 and message in stderr, stderr


def test_eig_on_an_image_with_lanczos_and_the_stopping_rule(shared_image, tmp_path, capsys):
    image = shared_image("cameraman.tif")
    out = tmp_path / "cam"
    args = ["analyze", "eig", image, "--model", "mgdl", "--downsample", "8", "--width", "12"]
    args += ["--method", "lanczos", "--eig-stop", "2", "--out", out, *EIG_TINY]
    code, _, stderr = run_cli(args, capsys)
    assert code == 0, stderr
    run = json.loads((out / "eig_mgdl.json").read_text())
    assert run["config"]["train_points"] == 16 * 16 and run["config"]["eig_stop"] == 2.0
    assert {e["method"] for e in run["evaluations"]} == {"lanczos"}
    assert [g["stop_reason"] for g in run["grades"]] == ["eigenvalue_stop"] * 2
    assert not (out / "eig_sgdl.json").exists()


def test_sweep_lr_table_with_a_diverging_run(tmp_path, capsys):
    out = tmp_path / "sweep"
    args = ["sweep-lr", "synthetic:2", "--lrs-gd", "1e-2,1e4", "--lrs-adam", "1e-3"]
    code, stdout, stderr = run_cli([*args, "--out", out, *SWEEP_TINY], capsys)
    assert code == 0, stderr
    data = json.loads((out / "sweep.json").read_text())
    rows = {(r["model"], r["optimizer"], r["lr"]): r for r in data["rows"]}
    assert len(rows) == 6 and data["config"]["train"]["init"] == "he"
    for model in ("mgdl", "sgdl"):
        assert rows[(model, "gd", 1e4)]["test_loss"] is None
        assert rows[(model, "gd", 1e4)]["diverged"]
        assert rows[(model, "gd", 1e-2)]["test_loss"] > 0
        assert rows[(model, "adam", 1e-3)]["grades_done"] == (2 if model == "mgdl" else 1)
    table = (out / "sweep.md").read_text()
    assert "diverged" in table and "PSNR" not in table and "| gd | 0.01 |" in table
    assert (out / "sweep.png").stat().st_size > 1000 and table.strip() in stdout


def test_sweep_lr_resumes_and_extends_without_training_again(tmp_path, capsys):
    out = tmp_path / "sweep"
    base = ["sweep-lr", "synthetic:1", "--optimizers", "gd", "--models", "mgdl", "--out", out]
    tiny = ["--epochs", "20", "--grades", "2", "--width", "8"]
    code, _, stderr = run_cli([*base, "--lrs-gd", "1e-2", *tiny, "--quiet"], capsys)
    assert code == 0, stderr
    first = json.loads((out / "sweep.json").read_text())["rows"]
    assert not (out / "sweep_partial.json").exists()
    assert first[0]["diverged_grade"] is None and first[0]["diverged_epoch"] is None

    code, _, stderr = run_cli([*base, "--lrs-gd", "1e-2", *tiny], capsys)
    assert code == 2 and "holds a sweep; --resume" in stderr, stderr
    longer = ["--epochs", "30", *tiny[2:]]
    code, _, stderr = run_cli([*base, "--lrs-gd", "1e-2", "--resume", *longer], capsys)
    assert code == 2 and "made with another train;" in stderr, stderr

    code, _, stderr = run_cli([*base, "--lrs-gd", "1e-2,1e4", "--resume", *tiny], capsys)
    assert code == 0, stderr
    # Only the new learning rate ran (one progress line); the earlier row is kept as it was.
    assert stderr.count("its,") == 1 and "lr 10000" in stderr, stderr
    rows = json.loads((out / "sweep.json").read_text())["rows"]
    assert [r["lr"] for r in rows] == [1e-2, 1e4] and rows[0] == first[0]
    assert rows[1]["diverged_grade"] == 1 and rows[1]["diverged_epoch"] >= 0
    assert "diverged (grade 1, epoch" in (out / "sweep.md").read_text()

    code, _, stderr = run_cli([*base, "--lrs-gd", "1e-3", "--overwrite", *tiny, "--quiet"], capsys)
    assert code == 0, stderr
    assert [r["lr"] for r in json.loads((out / "sweep.json").read_text())["rows"]] == [1e-3]


def test_sweep_lr_on_an_image_reports_psnr(shared_image, tmp_path, capsys):
    image = shared_image("cameraman.tif")
    out = tmp_path / "sweep"
    args = ["sweep-lr", image, "--downsample", "16", "--optimizers", "adam", "--models", "mgdl"]
    code, _, stderr = run_cli([*args, "--lrs-adam", "1e-3", "--out", out, *SWEEP_TINY], capsys)
    assert code == 0, stderr
    (row,) = json.loads((out / "sweep.json").read_text())["rows"]
    assert row["test_psnr"] > 5 and "PSNR" in (out / "sweep.md").read_text()


@pytest.mark.parametrize(
    "args, message",
    [
        (["analyze", "eig", "synthetic:3"], "unknown synthetic setting"),
        (["analyze", "eig", "no/such/image.png"], "not found"),
        (["analyze", "eig", "synthetic:1", "--k", "0"], "--k must be an integer >= 1"),
        (["analyze", "eig", "synthetic:1", "--eta", "-1"], "--eta must be a finite number"),
        (["analyze", "eig", "synthetic:1", "--interval", "0"], "--interval must be"),
        (["analyze", "eig", "synthetic:1", "--eig-stop", "low"], "--eig-stop must be"),
        (["analyze", "eig", "synthetic:1", "--model", "sgdl", "--eig-stop", "-0.9"], "MGDL only"),
        (["analyze", "eig", "synthetic:1", "--lanczos-steps", "5"], "--lanczos-steps"),
        (["analyze", "eig", "synthetic:1", "--downsample", "2"], "apply to images"),
        (["analyze", "eig", "synthetic:1", "--width", "0"], "--width must be"),
        (["analyze", "eig", "synthetic:1", "--optimizer", "adam", "--eig-stop", "-0.9"], "GD rule"),
        (["analyze", "eig", "synthetic:1", "--no-hessian"], "--no-hessian applies"),
        (["sweep-lr", "synthetic:1", "--lrs-gd", "fast"], "not a comma list of numbers"),
        (["sweep-lr", "synthetic:1", "--lrs-adam", "0"], "must be finite and > 0"),
        (["sweep-lr", "synthetic:1", "--models", "mgdl,cnn"], "--models must be"),
        (["sweep-lr", "synthetic:1", "--optimizers", "sgd"], "--optimizers must be"),
        (["sweep-lr", "synthetic:1", "--epochs", "0"], "--epochs must be"),
        (["sweep-lr", "synthetic:1", "--invert"], "apply to images"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(args, message, tmp_path, capsys):
    code, _, stderr = run_cli([*args, "--out", tmp_path / "x", "--quiet"], capsys)
    assert code == 2
    assert stderr.count("\n") == 1 and message in stderr, stderr
    assert stderr.startswith("mgdl-fast: error:")


SWEEP_ONE = ["sweep-lr", "synthetic:1", "--optimizers", "gd", "--models", "mgdl", "--lrs-gd",
             "1e-2", "--epochs", "20", "--grades", "2", "--width", "8", "--quiet"]  # fmt: skip


def test_sweep_lr_keeps_a_users_files_and_never_writes_through_a_link(tmp_path, capsys):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "sweep.md").write_text("my notes")
    code, _, stderr = run_cli([*SWEEP_ONE, "--out", out], capsys)
    assert code == 2 and "sweep.md exists; pass --overwrite" in stderr, stderr
    assert os.listdir(out) == ["sweep.md"] and (out / "sweep.md").read_text() == "my notes"
    elsewhere = tmp_path / "elsewhere.png"
    elsewhere.write_text("not a figure")
    (out / "sweep.png").symlink_to(elsewhere)
    code, _, stderr = run_cli([*SWEEP_ONE, "--out", out, "--overwrite"], capsys)
    assert code == 2 and "sweep.png is a symbolic link" in stderr and stderr.count("\n") == 1
    assert elsewhere.read_text() == "not a figure" and not (out / "sweep.json").exists()
    (out / "sweep.png").unlink()
    assert run_cli([*SWEEP_ONE, "--out", out, "--overwrite"], capsys)[0] == 0
    assert (out / "sweep.md").read_text().startswith("| optimizer")


def test_sweep_lr_overwrite_keeps_the_old_sweep_until_the_new_one_ends(
    tmp_path, capsys, monkeypatch
):
    from mgdl_fast.cli import sweep_lr
    from mgdl_fast.errors import InputError

    out = tmp_path / "sweep"
    assert run_cli([*SWEEP_ONE, "--out", out], capsys)[0] == 0
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}

    def failing(*args, **kwargs):
        raise InputError("the new sweep failed")

    monkeypatch.setattr(sweep_lr, "sweep", failing)
    code, _, stderr = run_cli([*SWEEP_ONE, "--out", out, "--overwrite"], capsys)
    assert code == 2 and "the new sweep failed" in stderr
    assert {name: (out / name).read_bytes() for name in os.listdir(out)} == before


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: [1, 2], "not a sweep"),
        (lambda d: {"config": d["config"]}, "field rows is missing"),
        (lambda d: {**d, "config": []}, "field config must be an object"),
        (lambda d: {**d, "rows": [{"model": "mgdl"}]}, "field rows[0].optimizer is missing"),
        (lambda d: {**d, "rows": [{**d["rows"][0], "lr": "fast"}]}, "rows[0].lr must be"),
    ],
)
def test_sweep_lr_resume_refuses_a_damaged_sweep_in_one_line(tmp_path, capsys, edit, message):
    out = tmp_path / "sweep"
    assert run_cli([*SWEEP_ONE, "--out", out], capsys)[0] == 0
    saved = json.loads((out / "sweep.json").read_text())
    (out / "sweep.json").write_text(json.dumps(edit(saved)))
    code, _, stderr = run_cli([*SWEEP_ONE, "--out", out, "--resume"], capsys)
    assert code == 2 and message in stderr and stderr.count("\n") == 1, stderr
    assert "sweep.json" in stderr

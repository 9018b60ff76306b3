"""``mgdl-fast fit --task denoise|deblur`` end to end on tiny images, defaults, resume, errors."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from mgdl_fast.train.progress import Progress

from ..helpers import resolved, run_cli

TINY = ["--epochs", "20", "--grades", "2", "--width", "16", "--layers", "2", "--quiet"]


def _config(*argv):
    return resolved("--device", "cpu", *argv)


def test_defaults_are_the_authors_selected_hyper_parameters():
    mgdl = _config("--task", "denoise", "--preset", "paper")
    assert mgdl["task"]["beta"] == 1.0 and mgdl["task"]["lambda"] == 1e-2
    assert mgdl["task"]["noise_255"] == 10.0 and mgdl["task"]["blur"] is None
    assert mgdl["train"]["lr"] == 5e-3 and mgdl["train"]["epochs"] == 20_000
    assert not mgdl["train"]["early_stopping"] and mgdl["train"]["record_every"] == 100
    assert mgdl["model"] == {**mgdl["model"], "kind": "mgdl", "grades": 4, "width": 128,
                             "layers": 3, "encoding": "none"}  # fmt: skip
    assert mgdl["train"]["cache_dtype"] == "fp32"
    sgdl = _config("--task", "denoise", "--model", "sgdl")
    assert (sgdl["task"]["beta"], sgdl["task"]["lambda"]) == (1e-1, 1e-4)
    assert sgdl["model"]["grades"] * sgdl["model"]["layers"] == 12
    deblur = _config("--task", "deblur")
    assert (deblur["task"]["beta"], deblur["task"]["lambda"]) == (1e-2, 1e-1)
    assert deblur["task"]["noise_255"] == 3.0 and deblur["task"]["blur"] == 3.0
    assert deblur["preset"] == "quick" and deblur["train"]["epochs"] == 1000
    sgdl = _config("--task", "deblur", "--model", "sgdl", "--beta", "2", "--lambda", "0")
    assert (sgdl["task"]["beta"], sgdl["task"]["lambda"]) == (2.0, 0.0)
    assert _config("--lr", "0.01", "--task", "deblur")["train"]["lr"] == 0.01
    regression = _config()
    assert regression["task"] == {"name": "regression"} and regression["train"]["lr"] == 1e-3
    assert regression["model"]["layers"] == 2 and regression["train"]["record_every"] == 10


def test_denoise_writes_every_output_and_predict_renders_it(tiny_png, tmp_path, capsys):
    out = tmp_path / "dn"
    code, stdout, _ = run_cli(["fit", tiny_png, "--task", "denoise", "--out", out, *TINY], capsys)
    assert code == 0
    assert "observation: noise 10/255 (seed 0): PSNR" in stdout and "psnr" in stdout
    for name in ("grade_1.png", "grade_2.png", "observed.png", "curves.png", "model.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    grade = metrics["grades"][1]
    assert {"psnr", "train_loss", "scale", "observed_psnr"} <= set(grade["final"])
    assert grade["curves"]["psnr"]["epoch"] == [0]
    assert metrics["config"]["task"]["observation"]["observed_psnr"] > 20
    code, _, _ = run_cli(["predict", out, "--npy", "--out", tmp_path / "r.png"], capsys)
    assert code == 0
    np.testing.assert_allclose(
        np.load(tmp_path / "r.npy"), np.load(out / "reconstruction.npy"), rtol=1e-5, atol=1e-5
    )


def test_deblur_resumed_mid_grade_is_exact(tiny_png, tmp_path, capsys, monkeypatch):
    """The TV variable u is part of the saved state: a resumed deblur run equals the
    uninterrupted one bit for bit."""
    args = ["fit", tiny_png, "--task", "deblur", "--blur", "1", *TINY]
    assert run_cli([*args, "--out", tmp_path / "full"], capsys)[0] == 0
    full = np.load(tmp_path / "full" / "reconstruction.npy")
    advance, sent = Progress.advance, []

    def signal_once(self, epochs):
        advance(self, epochs)
        if self._label.startswith("grade 2") and self._done >= 7 and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGTERM)

    with monkeypatch.context() as patch:
        patch.setattr(Progress, "advance", signal_once)
        assert run_cli([*args, "--out", tmp_path / "b"], capsys)[0] == 143
    code, _, err = run_cli(["fit", "--out", tmp_path / "b", "--resume", "--quiet"], capsys)
    assert code == 0 and "in grade 2 after epoch" in err
    np.testing.assert_array_equal(np.load(tmp_path / "b" / "reconstruction.npy"), full)
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert len(metrics["grades"]) == 2 and metrics["status"] == "complete"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--noise", "5"], "apply to --task denoise or deblur only"),
        (["--task", "denoise", "--blur", "2"], "--blur applies to --task deblur"),
        (["--task", "denoise", "--beta", "0"], "beta out of range"),
        (["--task", "denoise", "--lambda=-1"], "lambda out of range"),
        (["--task", "denoise", "--noise=-3"], "--noise must be a finite number >= 0"),
        (["--task", "denoise", "--noise", "0"], "--noise must be > 0 for denoising"),
        (["--task", "deblur", "--blur", "0"], "blur sigma must be"),
        (["--task", "denoise", "--crop", "32", "8"], "--crop 32 8 must lie within"),
    ],
)
def test_bad_restoration_options_give_one_line_errors(tiny_png, tmp_path, capsys, extra, message):
    code, _, err = run_cli(["fit", tiny_png, "--out", tmp_path / "o", "--quiet", *extra], capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1, err

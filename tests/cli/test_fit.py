"""The command line end to end on tiny images, and every bad input as a one-line error."""

from __future__ import annotations

import json
import os
import signal

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mgdl_fast.cli import main
from mgdl_fast.train.progress import Progress

from ..helpers import resolved, run_cli

TINY = ["--epochs", "20", "--grades", "2", "--width", "16", "--quiet"]


def test_fit_writes_every_output_and_predict_renders(tiny_png, tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, _ = run_cli(["fit", tiny_png, "--out", out, *TINY], capsys)
    assert code == 0, stdout
    for name in (
        "grade_1.png",
        "grade_2.png",
        "metrics.json",
        "curves.png",
        "model.safetensors",
        "model.json",
        "reconstruction.npy",
    ):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "complete" and len(metrics["grades"]) == 2
    grade = metrics["grades"][1]
    assert {"train_psnr", "val_psnr", "test_psnr", "test_loss"} <= set(grade["final"])
    assert grade["time_s"] > 0 and grade["curves"]["val_loss"]["epoch"][0] == 0
    assert metrics["config"]["model"]["width"] == 16 and "torch" in metrics["environment"]
    assert iio.imread(out / "grade_2.png").shape == (16, 16)
    assert np.load(out / "reconstruction.npy").shape == (16, 16, 1)

    code, stdout, _ = run_cli(["predict", out, "--size", 40, 24, "--npy"], capsys)
    assert code == 0, stdout
    assert iio.imread(out / "render_40x24.png").shape == (40, 24)
    render = np.load(out / "render_40x24.npy")
    assert render.shape == (40, 24, 1) and np.isfinite(render).all()


def test_predict_at_training_size_reproduces_the_reconstruction(tiny_png, tmp_path, capsys):
    out = tmp_path / "run"
    assert run_cli(["fit", tiny_png, "--out", out, *TINY], capsys)[0] == 0
    assert (
        run_cli(
            ["predict", out / "model.safetensors", "--npy", "--out", tmp_path / "r.png"], capsys
        )[0]
        == 0
    )
    np.testing.assert_allclose(
        np.load(tmp_path / "r.npy"), np.load(out / "reconstruction.npy"), rtol=1e-5, atol=1e-5
    )


def test_sgdl_from_the_cli(tiny_png, tmp_path, capsys):
    code, stdout, _ = run_cli(
        ["fit", tiny_png, "--model", "sgdl", "--out", tmp_path / "s", *TINY], capsys
    )
    assert code == 0
    metrics = json.loads((tmp_path / "s" / "metrics.json").read_text())
    assert len(metrics["grades"]) == 1 and metrics["grades"][0]["shape"]["hidden_layers"] == 4


def test_a_signal_saves_the_grade_in_progress_and_resume_is_exact(
    tiny_png, tmp_path, capsys, monkeypatch
):
    """SIGINT mid-grade: saved at the next block, exit 130; --resume continues bit for bit."""
    args = ["fit", tiny_png, *TINY, "--checkpoint-every", "1000"]
    assert run_cli([*args, "--out", tmp_path / "full"], capsys)[0] == 0
    advance, sent = Progress.advance, []

    def signal_once(self, epochs):
        advance(self, epochs)
        if self._done >= 12 and not sent:
            sent.append(True)
            os.kill(os.getpid(), signal.SIGINT)

    with monkeypatch.context() as patch:
        patch.setattr(Progress, "advance", signal_once)
        code, _, err = run_cli([*args, "--out", tmp_path / "cut"], capsys)
    assert code == 130 and "interrupted by SIGINT in grade 1" in err and "--resume" in err
    assert json.loads((tmp_path / "cut" / "metrics.json").read_text())["status"] == "interrupted"
    code, _, err = run_cli(["fit", "--out", tmp_path / "cut", "--resume", "--quiet"], capsys)
    assert code == 0 and "resuming" in err and "in grade 1 after epoch" in err
    full = load_file(str(tmp_path / "full" / "model.safetensors"))
    resumed = load_file(str(tmp_path / "cut" / "model.safetensors"))
    # The quick preset's Fourier frequencies are stored with the grades.
    assert set(full) == set(resumed) == {"encoding", "grade1", "grade2"}
    assert all(torch.equal(full[k], resumed[k]) for k in full)


def test_conversions_are_announced(tmp_path, capsys):
    rgba = np.random.default_rng(0).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    iio.imwrite(tmp_path / "rgba.png", rgba)
    code, _, err = run_cli(["fit", tmp_path / "rgba.png", "--out", tmp_path / "o", *TINY], capsys)
    assert code == 0 and "note:" in err and "alpha channel dropped" in err
    assert np.load(tmp_path / "o" / "reconstruction.npy").shape == (8, 8, 3)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--lr", "0"], "learning rate must be a finite number > 0"),
        (["--lr=-1e-3"], "learning rate must be a finite number > 0"),
        (["--epochs", "0"], "epochs must be an integer >= 1"),
        (["--width", "0"], "width must be an integer >= 1"),
        (["--grades", "0"], "grades must be an integer >= 1"),
        (["--layers", "-2"], "layers must be an integer >= 1"),
        (["--device", "tpu"], "unknown device 'tpu'"),
        (["--backend", "magic"], "unknown backend 'magic'"),
    ],
)
def test_bad_options_give_one_line_errors(tiny_png, tmp_path, capsys, extra, message):
    code, _, err = run_cli(["fit", tiny_png, "--out", tmp_path / "o", "--quiet", *extra], capsys)
    assert code == 2
    assert message in err and err.count("\n") == 1, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_unavailable_device(tiny_png, tmp_path, capsys):
    code, _, err = run_cli(["fit", tiny_png, "--device", "cuda", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "no CUDA device is available" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("missing.png", None, "image file not found"),
        ("text.png", b"hello", "cannot read"),
        ("empty.png", b"", "cannot read"),
    ],
)
def test_bad_image_files(tmp_path, capsys, name, content, message):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    code, _, err = run_cli(["fit", path, "--out", tmp_path / "o"], capsys)
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_one_pixel_and_nan_images(tmp_path, capsys):
    iio.imwrite(tmp_path / "dot.png", np.zeros((1, 1), np.uint8))
    code, _, err = run_cli(["fit", tmp_path / "dot.png", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "1x1 pixels" in err
    nan = np.full((4, 4), 0.5, np.float32)
    nan[2, 2] = np.nan
    iio.imwrite(tmp_path / "nan.tiff", nan)
    code, _, err = run_cli(["fit", tmp_path / "nan.tiff", "--out", tmp_path / "o"], capsys)
    assert code == 2 and "NaN" in err and err.count("\n") == 1


def test_argparse_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as info:
        main(["fit", "--epochs", "many"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--epochs: expected an integer" in err and err.count("\n") == 1


def test_divergence_exits_nonzero_and_says_so(tiny_png, tmp_path, capsys):
    code, stdout, err = run_cli(
        ["fit", tiny_png, "--optimizer", "gd", "--lr", "1e8", "--out", tmp_path / "o", *TINY],
        capsys,
    )
    assert code == 1
    assert "grade 1 diverged" in err and "no grade was kept" in err
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["status"] == "diverged"


def test_predict_refuses_a_bad_checkpoint(tmp_path, capsys):
    code, _, err = run_cli(["predict", tmp_path / "nothing.safetensors"], capsys)
    assert code == 2 and "checkpoint file not found" in err
    (tmp_path / "m.json").write_text("{}")
    (tmp_path / "m.safetensors").write_bytes(b"junk")
    code, _, err = run_cli(["predict", tmp_path / "m.json"], capsys)
    assert code == 2 and "cannot read checkpoint" in err


def test_default_image_uses_the_quick_preset_on_cpu():
    from mgdl_fast.run.resolve import DEFAULT_IMAGE

    config = resolved("--device", "cpu")
    assert config["image"]["source"] == DEFAULT_IMAGE and config["preset"] == "quick"
    assert config["train"]["epochs"] == 300
    # docs/QUALITY.md: the quick preset reads Fourier features; the papers' presets do not.
    fourier = {"encoding": "fourier", "frequencies": 64, "sigma": 5.0}
    assert config["model"] == {**config["model"], **fourier}
    paper = resolved("--preset", "paper")
    assert paper["train"]["epochs"] == 10_000 and paper["train"]["early_stopping"]
    assert paper["model"]["encoding"] == "none"
    raw = resolved("--encoding", "none")
    assert raw["model"]["encoding"] == "none"


def test_info_lists_backends(capsys):
    code, stdout, _ = run_cli(["info"], capsys)
    assert code == 0 and "torch: available" in stdout and "torch" in stdout


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("mgdl-fast 0.")


@pytest.mark.parametrize("cache", [[], ["--no-feature-cache"]], ids=["cached", "recomputed"])
def test_an_explicit_backend_serves_every_op_of_every_grade(tiny_png, tmp_path, capsys, cache):
    out = tmp_path / "run"
    args = ["fit", tiny_png, "--out", out, "--backend", "reference", *cache, *TINY]
    code, _, _ = run_cli(args, capsys)
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    for grade in metrics["grades"]:
        assert grade["backend"]["backend"] == "torch"
        assert set(grade["backend"]["ops"].values()) == {"torch"}, grade["backend"]["ops"]
    assert set(metrics["backends"].values()) == {"torch"}


def test_options_reach_every_grade(tiny_png, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["fit", tiny_png, "--out", out, "--precision", "fp32", "--nondeterministic", *TINY]
    assert run_cli(args, capsys)[0] == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["train"]["precision"] == "fp32"
    for grade in metrics["grades"]:
        assert grade["backend"]["precision"] == "fp32"
        assert grade["backend"]["deterministic"] is False

"""Function approximation (PROTOCOL 6): the 2D target, MSDL, the runner and ``mgdl-fast approx``."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from mgdl_fast import TrainConfig, bind
from mgdl_fast.cli import main
from mgdl_fast.experiments.approx.msdl import MSDLConfig, MSDLModel, MSDLObjective, fit_msdl
from mgdl_fast.experiments.approx.study import SETTINGS, error_metrics, run_setting
from mgdl_fast.spec import block_apply
from mgdl_fast.tasks import FunctionTask
from mgdl_fast.tasks.functions.target2d import PHASES, function_2d, target_2d
from mgdl_fast.train.features import FeatureCache

pytestmark = pytest.mark.usefixtures("one_thread")


def _gd(**overrides):
    settings = {"epochs": 300, "lr": 1e-2, "optimizer": "adam", "device": "cpu"}
    settings.update(early_stopping=False, record_every=50, test_every=50, **overrides)
    return TrainConfig(**settings)


def test_2d_target_and_grids():
    task = function_2d(J=4)
    assert task.splits["train"].x.shape == (256, 2) and task.splits["test"].x.shape == (65536, 2)
    x, y = 0.3, 0.7
    p1, p2, p3, p4, p5 = PHASES
    two_pi = 2 * math.pi
    expected = (
        math.sin(two_pi * x + p1) * math.sin(two_pi * y + p2)
        + math.sin(two_pi * (10 * x + 10 * y) + p3)
        + math.sin(two_pi * 30 * x + p4) * math.sin(two_pi * 30 * y + p5)
    )
    value = target_2d(torch.tensor([[x, y]], dtype=torch.float64))
    assert abs(value.item() - expected) < 1e-12
    train = task.splits["train"]
    # Row-major in y: the second point moves along x.
    assert train.x[1].tolist() == [pytest.approx(1 / 15), 0.0] and train.grid == (16, 16)
    torch.testing.assert_close(train.y, target_2d(train.x.double()).float())


def test_msdl_step_is_the_gradient_of_the_summed_subnets():
    task = FunctionTask.setting(1, J=5)
    model, _, _ = fit_msdl(task, MSDLConfig(width=4, layers=2), _gd(epochs=1))
    x, y = task.splits["train"].x, task.splits["train"].y
    inputs = FeatureCache({name: split.x for name, split in task.splits.items()})
    objective = MSDLObjective(task, model)
    objective.start_grade(bind(model.params.shape, device="cpu", rows=10_000), inputs, model.params)
    grads = model.params.zeros_like()
    loss = objective.step(inputs, model.params, grads)
    flats = [b.flat.double().requires_grad_(True) for b in model.blocks]
    out = sum(
        block_apply(f, c * x.double(), b.shape)
        for f, c, b in zip(flats, model.coeffs, model.blocks)
    )
    expected = 0.5 * torch.mean((out - y.double()) ** 2)
    assert math.isclose(loss.item(), expected.item(), rel_tol=1e-5)
    for grad, reference in zip(grads.blocks, torch.autograd.grad(expected, flats)):
        torch.testing.assert_close(grad.flat.double(), reference, rtol=1e-4, atol=1e-7)
    assert isinstance(model, MSDLModel) and model.num_params == 4 * (8 + 20 + 5)


def test_msdl_training_lowers_the_loss():
    task = FunctionTask.setting(1, J=6)
    _, record, diverged = fit_msdl(task, MSDLConfig(width=8, layers=2), _gd(epochs=200))
    assert diverged is None
    losses = record.curves["train_loss"]["value"]
    assert losses[-1] < 0.8 * losses[0], losses
    assert record.epochs_run == 200 and set(record.final) == {"train_loss", "val_loss", "test_loss"}


def test_error_metrics():
    y = torch.tensor([[3.0], [4.0]])
    metrics = error_metrics(torch.zeros(2, 1), y)
    assert metrics == {"loss": 6.25, "rel_l2": 1.0, "max_abs": 4.0}


def test_setting_1_error_falls_at_every_grade_and_rows_are_complete():
    configs = {m: _gd(lr=1e-2, epochs=150) for m in ("mgdl", "sgdl", "msdl")}
    results, task, predictions = run_setting(SETTINGS["1"], ("mgdl", "msdl"), configs, J=7)
    rows = [r for r in results["rows"] if r["model"] == "mgdl"]
    assert [r["grade"] for r in rows] == [1, 2, 3, 4]
    errors = [r["test_rel_l2"] for r in rows]
    assert all(b < a for a, b in zip(errors, errors[1:])), errors
    assert len(predictions["mgdl"]) == 4 and len(predictions["msdl"]) == 1
    assert results["models"]["mgdl"]["params"] == 97 + 3 * 1089
    assert results["models"]["msdl"]["params"] == 964


def test_approx_cli_writes_json_and_figures(tmp_path, capsys):
    out = tmp_path / "a"
    args = ["approx", "--setting", "2d", "--J", "4", "--epochs", "30", "--record-every", "10"]
    code = main([*args, "--out", str(out), "--quiet", "--models", "mgdl,sgdl,msdl"])
    stdout = capsys.readouterr().out
    assert code == 0
    assert "| MGDL | 4 |" in stdout and "| SGDL | - |" in stdout and "| MSDL | - |" in stdout
    results = json.loads((out / "approx.json").read_text())
    assert results["setting"] == "2d" and len(results["rows"]) == 6
    assert results["models"]["mgdl"]["train"]["optimizer"] == "adam"
    for name in ("approx.png", "curves_mgdl.png", "curves_sgdl.png", "curves_msdl.png"):
        assert (out / name).is_file(), name


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--models", "mgdl,xyz"], "--models takes"),
        (["--J", "1"], "--J must be between"),
        (["--threads", "0"], "--threads must be"),
        (["--lr-mgdl", "0"], "learning rate must be"),
    ],
)
def test_bad_approx_options(tmp_path, capsys, extra, message):
    code = main(["approx", "--setting", "1", "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err


def test_approx_with_an_explicit_backend_uses_it_for_every_op(tmp_path, capsys):
    out = tmp_path / "a"
    args = ["approx", "--setting", "1", "--J", "4", "--epochs", "20", "--record-every", "10"]
    code = main([*args, "--out", str(out), "--quiet", "--backend", "reference"])
    assert code == 0
    results = json.loads((out / "approx.json").read_text())
    for model, info in results["models"].items():
        for record in info["records"]:
            assert set(record["backend"]["ops"].values()) == {"torch"}, (model, record["backend"])


def test_approx_keeps_a_users_files_and_never_writes_through_a_link(tmp_path, capsys):
    out = tmp_path / "a"
    out.mkdir()
    (out / "approx.png").write_text("mine")
    args = ["approx", "--setting", "1", "--J", "4", "--epochs", "20", "--record-every", "10",
            "--models", "mgdl", "--quiet", "--out", str(out)]  # fmt: skip
    assert main(args) == 2 and "approx.png exists; pass --overwrite" in capsys.readouterr().err
    assert os.listdir(out) == ["approx.png"]
    (out / "curves_mgdl.png").symlink_to(tmp_path / "elsewhere.png")
    assert main([*args, "--overwrite"]) == 2
    assert "curves_mgdl.png is a symbolic link" in capsys.readouterr().err
    assert not (tmp_path / "elsewhere.png").exists()
    (out / "curves_mgdl.png").unlink()
    assert main([*args, "--overwrite"]) == 0
    assert (out / "approx.png").read_bytes()[:4] == b"\x89PNG"
    assert json.loads((out / "approx.json").read_text())["setting"] == "1"

"""Lanczos extremes against dense eigh: known matrices, then trained mid-size MGDL and SGDL
networks (the acceptance check: 1e-3 relative)."""

from __future__ import annotations

import json

import pytest
import torch

from mgdl_fast import ModelConfig, TrainConfig, fit
from mgdl_fast.experiments.analysis.accuracy import main as accuracy_main
from mgdl_fast.experiments.analysis.hessian import dense_hessian
from mgdl_fast.experiments.analysis.lanczos import lanczos_extremes
from mgdl_fast.experiments.analysis.spectrum import iteration_spectrum
from mgdl_fast.tasks import FunctionTask
from mgdl_fast.tasks.regression import RegressionObjective

pytestmark = pytest.mark.usefixtures("one_thread")


def _t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _symmetric(n: int, eigenvalues: torch.Tensor, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    return q @ torch.diag(eigenvalues) @ q.T


def test_known_spectrum_with_a_cluster_and_honest_bounds():
    n, k = 400, 6
    gen = torch.Generator().manual_seed(1)
    # A few outliers on both sides of a dense bulk, like a Hessian's spectrum.
    bulk = 0.01 * torch.rand(n - 10, generator=gen, dtype=torch.float64)
    values = torch.cat([bulk, _t([5.0, 4.0, 3.5, 2.0, 1.0, -0.5, -0.3, -0.2, -0.1, -0.05])])
    a = _symmetric(n, values)
    exact = torch.linalg.eigvalsh(a)
    result = lanczos_extremes(lambda v: a @ v, n, k, tol=1e-10)
    assert result.converged and result.steps < n
    got = _t(result.smallest + result.largest)
    want = torch.cat([exact[:k], exact[-k:]])
    bounds = _t(result.bounds_smallest + result.bounds_largest)
    assert torch.all((got - want).abs() <= bounds + 1e-12)
    torch.testing.assert_close(got, want, rtol=0, atol=5e-10 * 5.0)


def test_small_operator_exhausts_the_krylov_space_exactly():
    n = 12
    a = _symmetric(n, torch.linspace(-2, 3, n, dtype=torch.float64), seed=2)
    result = lanczos_extremes(lambda v: a @ v, n, 4)
    assert result.converged and result.steps == n
    exact = torch.linalg.eigvalsh(a)
    torch.testing.assert_close(_t(result.smallest), exact[:4])
    torch.testing.assert_close(_t(result.largest), exact[-4:])


def _trained_grade(model: ModelConfig, eta: float, grade: int, epochs: int):
    """(shape, theta, x, y) of ``grade``'s loss after ``epochs`` GD steps on setting 1."""
    task = FunctionTask.setting(1, J=8)
    captured = {}

    def hook(g, epoch, params, inputs, objective):
        if g == grade and epoch == epochs - 1:
            captured.update(
                shape=params.shape,
                theta=params.flat.detach().double().clone(),
                x=inputs.get("train").clone(),
                y=objective.residual["train"].clone(),
            )

    cfg = TrainConfig(
        epochs=epochs, lr=eta, optimizer="gd", device="cpu", early_stopping=False, init="he"
    )
    fit(task, RegressionObjective(task), model, cfg, progress=False, hook=hook)
    return captured["shape"], captured["theta"], captured["x"], captured["y"]


@pytest.mark.parametrize(
    "model, eta, grade",
    [
        (ModelConfig(kind="mgdl", grades=2, width=32, layers=1), 6e-2, 2),
        (ModelConfig(kind="sgdl", grades=4, width=20, layers=1), 5e-3, 1),
    ],
    ids=["mgdl-grade2-1089", "sgdl-4x20-1321"],
)
def test_lanczos_matches_dense_eigh_on_trained_networks(model, eta, grade):
    shape, theta, x, y = _trained_grade(model, eta, grade, epochs=300)
    p, k = shape.num_params, 10
    assert p > 1000
    hessian = dense_hessian(shape, theta, x, y)
    exact = torch.linalg.eigvalsh(torch.eye(p, dtype=torch.float64) - eta * hessian)
    spectrum = iteration_spectrum(shape, theta, x, y, eta, k, method="lanczos")
    assert spectrum.converged and spectrum.products < p // 3
    got = _t(spectrum.smallest + spectrum.largest)
    want = torch.cat([exact[:k], exact[-k:]])
    assert ((got - want).abs() / want.abs()).max() < 1e-3
    via_exact = iteration_spectrum(shape, theta, x, y, eta, k, method="exact")
    torch.testing.assert_close(_t(via_exact.smallest), exact[:k])
    # float32 Hessian-vector products (the cheap option at full size) keep the extremes.
    single = iteration_spectrum(shape, theta, x, y, eta, k, method="lanczos", dtype=torch.float32)
    got32 = _t(single.smallest + single.largest)
    assert ((got32 - want).abs() / want.abs()).max() < 1e-3


def test_accuracy_report_runs_and_agrees(tmp_path, capsys):
    path = tmp_path / "acc.json"
    args = ["synthetic:1", "--model", "mgdl", "--grade", "2", "--width", "12", "--steps", "20"]
    accuracy_main([*args, "--eta", "0.06", "--k", "4", "--json", str(path)])
    report = json.loads(path.read_text())
    assert report["params"] == 12 * 12 + 12 + 12 + 1 and report["train_points"] == 1024
    for name in ("lanczos_float64", "lanczos_float32"):
        assert report[name]["converged"] and report[name]["max_rel_error"] < 1e-3
    assert json.loads(capsys.readouterr().out) == report

"""The Adam stability analysis: the preconditioner is the one Adam's update applies, the spectrum
of P H is right (exact and Lanczos), the threshold is where the frozen iteration stops
contracting, and the tracker reads each grade's own optimizer."""

from __future__ import annotations

import pytest
import torch

from mgdl_fast import ModelConfig, TrainConfig, fit
from mgdl_fast.errors import InputError
from mgdl_fast.experiments.analysis.adam import (
    AdamEigenTracker,
    adam_scaling,
    preconditioned_spectra,
    stability_threshold,
)
from mgdl_fast.experiments.analysis.hessian import dense_hessian
from mgdl_fast.experiments.analysis.tracking import track_eigenvalues
from mgdl_fast.tasks import FunctionTask
from mgdl_fast.tasks.regression import RegressionObjective

MGDL = ModelConfig(kind="mgdl", grades=2, width=8, layers=1)


pytestmark = pytest.mark.usefixtures("one_thread")


def _adam(epochs: int, lr: float = 1e-2, **kw) -> TrainConfig:
    return TrainConfig(
        epochs=epochs, lr=lr, device="cpu", early_stopping=False, init="he", precision="fp32", **kw
    )


def _t(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def _task():
    task = FunctionTask.setting(1, J=6)
    return task, RegressionObjective(task)


class _Recorder:
    """A hook keeping, before every update, the iterate and Adam's state as the analysis sees it."""

    def __init__(self):
        self.seen: list[tuple] = []
        self.state = None

    def watch_optimizer(self, grade, optimizer):
        self.state = optimizer.state

    def __call__(self, grade, epoch, params, inputs, objective):
        s = self.state
        scaling = adam_scaling(s) if epoch > 0 else None
        self.seen.append(
            (grade, epoch, params.flat.double().clone(), s.exp_avg.double().clone(),
             float(s.step_size), scaling, float(s.step))
        )  # fmt: skip


def test_preconditioner_is_the_factor_of_adams_update():
    task, objective = _task()
    recorder = _Recorder()
    fit(task, objective, MGDL, _adam(12), progress=False, hook=recorder)
    checked = 0
    for before, after in zip(recorder.seen, recorder.seen[1:]):
        if before[0] != after[0]:
            continue
        # The update of epoch e moved theta by step_size * m * P, all read after that update.
        _, epoch, theta, _, _, _, _ = before
        _, _, theta_next, m, step_size, scaling, steps = after
        assert steps == epoch + 1
        # theta is stored in fp32: the difference of two iterates carries an ulp of theta.
        ulp = 2 * torch.finfo(torch.float32).eps * float(theta.abs().max())
        torch.testing.assert_close(theta - theta_next, step_size * m * scaling, rtol=1e-4, atol=ulp)
        checked += 1
    assert checked == 2 * 11
    with pytest.raises(ValueError, match="at least one step"):
        adam_scaling(recorder.state.__class__("adam", 1e-3, 4, torch.device("cpu")))


class _Capture(_Recorder):
    """Keeps grade 2's loss problem and Adam's P at the last iteration of ``epochs``."""

    def __init__(self, epochs: int):
        super().__init__()
        self.last, self.problem = epochs - 1, {}

    def __call__(self, grade, epoch, params, inputs, objective):
        if grade == 2 and epoch == self.last:
            self.problem.update(
                shape=params.shape, theta=params.flat.double().clone(),
                x=inputs.get("train").clone(), y=objective.residual["train"].clone(),
                scaling=adam_scaling(self.state),
            )  # fmt: skip


def _trained_grade(epochs: int = 30) -> dict:
    """A grade-2 problem after some Adam steps: shape, theta, inputs, residual, Adam's P."""
    task, objective = _task()
    capture = _Capture(epochs)
    fit(task, objective, MGDL, _adam(epochs), progress=False, hook=capture)
    return capture.problem


def test_spectrum_of_the_preconditioned_hessian_exact_and_lanczos():
    p = _trained_grade()
    args = (p["shape"], p["theta"], p["x"], p["y"], p["scaling"])
    hessian = dense_hessian(p["shape"], p["theta"], p["x"], p["y"])
    # The eigenvalues of the (non-symmetric) product P H, computed the plain way.
    product = torch.linalg.eigvals(p["scaling"][:, None] * hessian).real.sort().values
    assert p["scaling"].max() / p["scaling"].min() > 10
    exact, raw = preconditioned_spectra(*args, k=4, method="exact")
    torch.testing.assert_close(_t(exact.largest), product[-4:], rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(_t(exact.smallest), product[:4], rtol=1e-6, atol=1e-6)
    assert raw is not None
    plain = torch.linalg.eigvalsh(hessian)
    torch.testing.assert_close(_t(raw.largest), plain[-4:], rtol=1e-6, atol=1e-10)
    lanczos, raw_lanczos = preconditioned_spectra(*args, k=4, method="lanczos", tol=1e-8)
    assert lanczos.method == "lanczos" and lanczos.converged
    torch.testing.assert_close(_t(lanczos.largest), product[-4:], rtol=1e-5, atol=1e-8)
    assert raw_lanczos is not None
    torch.testing.assert_close(_t(raw_lanczos.largest), plain[-4:], rtol=1e-5, atol=0)
    _, none = preconditioned_spectra(*args, k=2, method="exact", hessian_too=False)
    assert none is None


@pytest.mark.parametrize("lr, beta1", [(1e-3, 0.9), (3e-2, 0.5), (0.1, 0.0)])
def test_threshold_is_where_frozen_adam_stops_contracting(lr, beta1):
    """Adam with a frozen preconditioner along an eigenvector of P H with eigenvalue a:
    m <- beta1 m + (1 - beta1) a theta; theta <- theta - lr m (the bias corrections -> 1)."""

    def growth(a: float, steps: int = 4000) -> float:
        theta, m = 1.0, 0.0
        for _ in range(steps):
            m = beta1 * m + (1 - beta1) * a * theta
            theta -= lr * m
        return abs(theta) + abs(m) / max(a, 1.0)

    threshold = stability_threshold(lr, beta1)
    assert growth(0.99 * threshold) < 1e-3
    assert growth(1.01 * threshold) > 1e3
    assert growth(-0.01 * threshold) > 1e3


def test_tracker_reads_each_grades_own_optimizer():
    task, objective = _task()
    tracker = AdamEigenTracker(4, k=2)
    summary = track_eigenvalues(task, objective, MGDL, _adam(13, lr=1e-2), tracker)
    got = [(e["grade"], e["iteration"], e["adam_step"]) for e in summary["evaluations"]]
    # No spectrum at iteration 0 (Adam's moments are still zero); each grade's counter restarts.
    assert got == [(g, i, i) for g in (1, 2) for i in (4, 8, 12)]
    for e in summary["evaluations"]:
        assert e["threshold"] == pytest.approx(38 / 1e-2)
        assert e["ratio"] == pytest.approx(e["largest"][-1] / e["threshold"])
        assert e["hessian"]["largest"][-1] > 0 and len(e["smallest"]) == 2
    assert tracker.betas == (0.9, 0.999)
    with pytest.raises(InputError, match="optimizer adam"):
        task, objective = _task()
        fit(task, objective, MGDL, _adam(3, optimizer="gd"), progress=False, hook=tracker)

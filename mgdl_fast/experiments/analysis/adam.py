"""Stability under Adam: the spectrum of the preconditioned Hessian against Adam's threshold.

Paper 1 reads GD's stability off ``J = I - eta * H``; its theory does not cover Adam. Adam's
update (as the engine runs it, ``OptimState``) is ``theta -= s_t * m_t / (sqrt(v_t / c_t) +
eps)`` with ``m`` and ``v`` moving averages (beta1, beta2) of the gradient and its square,
``c_t = 1 - beta2^t`` and ``s_t = lr / (1 - beta1^t)`` (-> lr after a few dozen steps). Freeze
the diagonal preconditioner at an iterate, ``P = diag(1 / (sqrt(v_t / c_t) + eps))``, and
linearise the gradient there (``H`` the grade's Hessian, earlier grades frozen as in PROTOCOL
4): Adam becomes heavy-ball momentum on a quadratic whose curvatures are the eigenvalues of
``P H`` (those of the symmetric ``P^1/2 H P^1/2``). Along an eigenvector with eigenvalue a the
pair (theta, m) moves by ``[[1 - lr (1 - beta1) a, -lr beta1], [(1 - beta1) a, beta1]]``, whose
determinant is beta1: it contracts iff ``0 < a < 2 (1 + beta1) / ((1 - beta1) lr)``, 38 / lr at
beta1 = 0.9 (the threshold of Cohen et al. 2022, "Adaptive gradient methods at the edge of
stability"). A negative a grows, as negative curvature does under GD. So ``lambda_max(P H) /
threshold`` plays the part of GD's ``-min eig(J)``: above 1 the frozen iteration oscillates and
grows.

What the frozen preconditioner captures: the linear stability of the next few steps, while P
changes little (v averages the squared gradients over ~1 / (1 - beta2) = 1000 steps). What it
does not: P reacting to the step itself (a growing oscillation grows the gradients, hence v, and
shrinks P along those coordinates: the feedback that lets Adam sit at or above the threshold and
come back instead of diverging), the next gradient's contribution to v, the bias-corrected step
``s_t > lr`` of the first steps, and everything beyond the quadratic model.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import torch

from ...block import BlockParams, BlockShape
from ...errors import InputError
from .hessian import dense_hessian, grade_loss, hvp_fn
from .lanczos import lanczos_extremes
from .spectrum import Spectrum, pick_method


def adam_scaling(state) -> torch.Tensor:
    """Adam's diagonal preconditioner ``1 / (sqrt(v / (1 - beta2^t)) + eps)`` ``[P]`` (float64)
    from an ``OptimState`` after ``t >= 1`` steps: the factor of ``s_t * m`` in its update."""
    steps = float(state.step)
    if state.kind != "adam" or steps < 1:
        raise ValueError("the Adam preconditioner needs an Adam state after at least one step")
    v_hat = state.exp_avg_sq.double() / (1.0 - state.beta2**steps)
    return 1.0 / (v_hat.sqrt() + state.eps)


def stability_threshold(lr: float, beta1: float) -> float:
    """The largest eigenvalue of ``P H`` for which Adam with a frozen preconditioner is stable:
    ``2 (1 + beta1) / ((1 - beta1) lr)`` (plain preconditioned GD, beta1 = 0: ``2 / lr``)."""
    return 2.0 * (1.0 + beta1) / ((1.0 - beta1) * lr)


def _exact(matrix: torch.Tensor, k: int, start: float) -> Spectrum:
    """The k smallest and largest eigenvalues of the symmetric ``matrix [n, n]`` by ``eigvalsh``
    (``start``: when the work on it began, for ``seconds``)."""
    values = torch.linalg.eigvalsh(matrix)
    k = min(k, values.numel())
    zeros = [0.0] * k
    n = values.numel()
    seconds = time.perf_counter() - start
    return Spectrum(
        values[:k].tolist(), values[-k:].tolist(), zeros, zeros, "exact", n, True, seconds
    )


def preconditioned_spectra(
    shape: BlockShape,
    theta: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    scaling: torch.Tensor,
    k: int = 10,
    *,
    hessian_too: bool = True,
    method: str = "auto",
    dtype: torch.dtype = torch.float64,
    max_steps: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
) -> tuple[Spectrum, Spectrum | None]:
    """The ``k`` smallest and largest eigenvalues of ``P H`` (as ``P^1/2 H P^1/2``) with
    ``P = diag(scaling [P])``, and with ``hessian_too`` those of ``H`` itself, where H is the
    Hessian of ``0.5 * mean((block(theta, x) - y)^2)`` at ``theta [P]``; ``x [N, D]``,
    ``y [N, C]``. ``exact`` forms H once (``dtype``) for both; ``lanczos`` runs once per matrix
    on Hessian-vector products in ``dtype``.
    """
    start = time.perf_counter()
    method = pick_method(method, theta.numel())
    theta = theta.detach().to(dtype)
    root = scaling.detach().double().to(theta.device).sqrt()
    if method == "exact":
        hessian = dense_hessian(shape, theta, x, y).double()
        scaled = _exact(root[:, None] * hessian * root[None, :], k, start)
        return scaled, (_exact(hessian, k, time.perf_counter()) if hessian_too else None)
    hvp = hvp_fn(grade_loss(shape, x, y))

    def run(left: torch.Tensor | None) -> Spectrum:
        begun = time.perf_counter()

        def matvec(v: torch.Tensor) -> torch.Tensor:
            if left is None:
                return hvp(theta, v.to(dtype)).double()
            return left * hvp(theta, (left * v).to(dtype)).double()

        r = lanczos_extremes(
            matvec, theta.numel(), k, max_steps=max_steps, tol=tol, seed=seed, device=theta.device
        )
        seconds = time.perf_counter() - begun
        return Spectrum(
            r.smallest, r.largest, r.bounds_smallest, r.bounds_largest, "lanczos", r.steps,
            r.converged, seconds,
        )  # fmt: skip

    return run(root), (run(None) if hessian_too else None)


@dataclass
class AdamEvaluation:
    """One spectrum of ``P H`` at ``iteration`` (0-based, within ``grade``) before its update,
    after ``step`` Adam steps; ``hessian``: that of H itself (or None)."""

    grade: int
    iteration: int
    step: int
    train_loss: float
    threshold: float
    spectrum: Spectrum
    hessian: Spectrum | None

    def to_dict(self, offset: int) -> dict:
        top = self.spectrum.largest[-1]
        return {
            "grade": self.grade,
            "iteration": self.iteration,
            "cumulative_iteration": offset + self.iteration,
            "adam_step": self.step,
            "train_loss": self.train_loss,
            "threshold": self.threshold,
            "ratio": top / self.threshold,
            **self.spectrum.to_dict(),
            "hessian": self.hessian.to_dict() if self.hessian is not None else None,
        }


class AdamEigenTracker:
    """Trainer hook: every ``interval`` iterations (from the first after iteration 0, when
    Adam's moments are still zero) the extreme eigenvalues of ``P H`` with Adam's preconditioner
    read from the grade's optimizer (``watch_optimizer``), and those of H (``hessian_too``).

    Other keywords go to ``preconditioned_spectra``. It never stops a grade: PROTOCOL 4's
    eigenvalue rule is a GD rule.
    """

    def __init__(
        self,
        interval: int,
        k: int = 10,
        *,
        hessian_too: bool = True,
        verbose: bool = False,
        **spectrum_kwargs,
    ):
        self.interval, self.k, self.hessian_too = interval, k, hessian_too
        self.verbose = verbose
        self.spectrum_kwargs = spectrum_kwargs
        self.evaluations: list[AdamEvaluation] = []
        self.betas: tuple[float, float] | None = None
        self._state = None

    def watch_optimizer(self, grade: int, optimizer) -> None:
        if optimizer.kind != "adam":
            raise InputError(f"the Adam analysis needs optimizer adam, got {optimizer.kind!r}")
        self._state = optimizer.state
        self.betas = (optimizer.state.beta1, optimizer.state.beta2)

    def __call__(self, grade: int, epoch: int, params: BlockParams, inputs, objective):
        if epoch == 0 or epoch % self.interval:
            return None
        state = self._state
        if state is None:
            raise RuntimeError("AdamEigenTracker ran before the trainer handed it an optimizer")
        x, y = inputs.get("train"), objective.residual["train"]
        theta = params.flat.detach().double()
        scaled, hessian = preconditioned_spectra(
            params.shape, theta, x, y, adam_scaling(state), self.k,
            hessian_too=self.hessian_too, **self.spectrum_kwargs,
        )  # fmt: skip
        with torch.no_grad():
            loss = float(grade_loss(params.shape, x, y)(theta))
        threshold = stability_threshold(state.lr, state.beta1)
        evaluation = AdamEvaluation(grade, epoch, int(state.step), loss, threshold, scaled, hessian)
        self.evaluations.append(evaluation)
        if self.verbose:
            print(
                f"grade {grade} it {epoch}: loss {loss:.4e}, lambda_max(PH) "
                f"{scaled.largest[-1]:.4g} = {scaled.largest[-1] / threshold:.3f} x threshold, "
                f"min {scaled.smallest[0]:.3g} ({scaled.method}, {scaled.seconds:.1f} s)",
                file=sys.stderr,
            )
        return None

"""Extreme eigenvalues of the gradient-descent iteration matrix ``J = I - eta * H``.

Gradient descent ``theta <- theta - eta * grad L(theta)`` linearised at an iterate has Jacobian
``J = I - eta * H(theta)``; the papers read stability off J's spectrum: inside (-1, 1) the step
contracts, below -1 it oscillates and grows (PROTOCOL 4). Two methods:

- ``exact``: the dense Hessian (``hessian.dense_hessian``) and ``torch.linalg.eigh``; for
  P up to a few thousand (PROTOCOL 4's networks);
- ``lanczos``: Lanczos on ``v -> v - eta * H v`` (``lanczos.lanczos_extremes``); for full-size
  networks, with a residual bound per returned eigenvalue.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import torch

from ...block import BlockShape
from .hessian import dense_hessian, grade_loss, hvp_fn
from .lanczos import lanczos_extremes

METHODS = ("auto", "exact", "lanczos")
# 'auto' forms H up to this many parameters (H is 8 P^2 bytes in float64: 32 MB at 2,000).
AUTO_EXACT_MAX_PARAMS = 2000
HVP_DTYPES = {"float64": torch.float64, "float32": torch.float32}


@dataclass
class Spectrum:
    """The k smallest and k largest eigenvalues of J (ascending) and how they were found.

    ``bound_*`` are Lanczos residual bounds on each value (zero for ``exact``); ``products`` is
    the number of Hessian-vector products (P for exact); ``seconds`` the wall time.
    """

    smallest: list[float]
    largest: list[float]
    bound_smallest: list[float]
    bound_largest: list[float]
    method: str
    products: int
    converged: bool
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def pick_method(method: str, num_params: int) -> str:
    if method == "auto":
        return "exact" if num_params <= AUTO_EXACT_MAX_PARAMS else "lanczos"
    return method


def iteration_spectrum(
    shape: BlockShape,
    theta: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    eta: float,
    k: int = 10,
    *,
    method: str = "auto",
    dtype: torch.dtype = torch.float64,
    max_steps: int = 300,
    tol: float = 1e-4,
    seed: int = 0,
) -> Spectrum:
    """The ``k`` smallest and largest eigenvalues of ``I - eta * H`` at ``theta [P]``, where H is
    the Hessian of ``0.5 * mean((block(theta, x) - y)^2)`` for ``x [N, D]``, ``y [N, C]``.

    The Hessian (or its products) is evaluated in ``dtype``; Lanczos keeps its basis in float64
    whatever ``dtype`` is.
    """
    start = time.perf_counter()
    method = pick_method(method, theta.numel())
    theta = theta.detach().to(dtype)
    if method == "exact":
        hessian = dense_hessian(shape, theta, x, y).double()
        values = torch.linalg.eigvalsh(
            torch.eye(theta.numel(), dtype=torch.float64, device=theta.device) - eta * hessian
        )
        k = min(k, values.numel())
        zeros = [0.0] * k
        return Spectrum(
            values[:k].tolist(),
            values[-k:].tolist(),
            zeros,
            zeros,
            "exact",
            theta.numel(),
            True,
            time.perf_counter() - start,
        )
    hvp = hvp_fn(grade_loss(shape, x, y))

    def matvec(v: torch.Tensor) -> torch.Tensor:
        return v - eta * hvp(theta, v.to(dtype)).double()

    result = lanczos_extremes(
        matvec, theta.numel(), k, max_steps=max_steps, tol=tol, seed=seed, device=theta.device
    )
    return Spectrum(
        result.smallest,
        result.largest,
        result.bounds_smallest,
        result.bounds_largest,
        "lanczos",
        result.steps,
        result.converged,
        time.perf_counter() - start,
    )

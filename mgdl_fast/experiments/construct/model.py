"""``construct(f, dim, grades)``: the constructive multigrade scheme as explicit ReLU networks.

Grade k is the contraction of operator.py applied to the residual ``e_{k-1} = f - (g_1 + ... +
g_{k-1})`` and realised by network.py; the model sums the first k grades' networks. Everything
is float64 NumPy: a construction, not training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from .kuhn import hat_sum, lattice_max_slope, lipschitz_bound, nodes
from .network import ReluNetwork, min_width, realize
from .operator import GradeOperator, contraction_grade

NORMS = ("L1", "L2", "L4", "Linf")
# Lattice refinement over the grid (finer where it is cheap).
_REFINE = {1: 8, 2: 4, 3: 2}
# Cells per axis of the lattice on which an unknown Lipschitz bound is estimated.
_ESTIMATE_CELLS = {1: 1 << 14, 2: 1 << 9, 3: 1 << 6}


@dataclass(frozen=True)
class ConstructedGrade:
    """One grade: its contraction operator (closed form) and its ReLU network."""

    operator: GradeOperator
    network: ReluNetwork

    def __call__(self, x: np.ndarray, *, method: str = "network") -> np.ndarray:
        """``g_k(x) [N]`` by the network or the closed-form operator."""
        if method == "network":
            return self.network(x)
        return hat_sum(self.operator.coeffs, x)

    def summary(self) -> dict:
        net = self.network
        shape = {"width": net.width, "depth": net.depth, "params": net.num_params}
        return {**self.operator.summary(), **shape}


class ConstructedModel:
    """The grades of ``construct``: ``predict(x, grades=k)`` sums the first k grades' outputs
    and ``residual_norms`` gives ``|f - predict|`` in L1, L2, L4 and Linf for k = 0..K."""

    def __init__(self, f, dim: int, grades: list[ConstructedGrade], settings: dict):
        self.f, self.dim, self.grades, self.settings = f, dim, grades, settings

    def __len__(self) -> int:
        return len(self.grades)

    def _points(self, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise InputError(f"x must be [N, {self.dim}], got shape {list(x.shape)}")
        if x.size and (x.min() < 0.0 or x.max() > 1.0):
            raise InputError("x must lie in [0, 1]^D")
        return x

    def predict(self, x, grades: int | None = None, *, method: str = "network") -> np.ndarray:
        """``sum_{k <= grades} g_k(x)`` ``[N]`` float64 for ``x [N, D]`` in [0, 1]^D (grades
        None: all). ``method`` "network" runs the ReLU networks; "operator" the closed form."""
        x = self._points(x)
        count = len(self) if grades is None else grades
        if not isinstance(count, int) or not 0 <= count <= len(self):
            raise InputError(f"grades must be 0-{len(self)}, got {grades!r}")
        if method not in ("network", "operator"):
            raise InputError(f"method must be network or operator, got {method!r}")
        out = np.zeros(x.shape[0])
        for grade in self.grades[:count]:
            out += grade(x, method=method)
        return out

    def residuals(self, x, *, method: str = "network") -> np.ndarray:
        """``e_k(x) = f(x) - predict(x, k)`` ``[K + 1, N]`` for k = 0..K."""
        x = self._points(x)
        e = [evaluate(self.f, x)]
        for grade in self.grades:
            e.append(e[-1] - grade(x, method=method))
        return np.stack(e)

    def residual_norms(self, points: int | np.ndarray = 1025, *, method: str = "network"):
        """Per k = 0..K, ``{"L1", "L2", "L4", "Linf"}`` of ``e_k`` on ``points``: an int is the
        uniform grid with that many points per axis, else ``[N, D]`` points; ``Lp`` is
        ``mean(|e|^p)^(1/p)`` (the grid's Riemann sum of the L^p([0, 1]^D) norm)."""
        x = grid(points, self.dim) if isinstance(points, int) else points
        return [norms(e) for e in self.residuals(x, method=method)]

    def summary(self) -> dict:
        return {
            "dim": self.dim,
            **self.settings,
            "grades": [g.summary() for g in self.grades],
        }


def norms(e: np.ndarray) -> dict[str, float]:
    a = np.abs(e)
    return {
        "L1": float(a.mean()),
        "L2": float(np.sqrt((a**2).mean())),
        "L4": float(((a**4).mean()) ** 0.25),
        "Linf": float(a.max()),
    }


def grid(points: int, dim: int) -> np.ndarray:
    """``points^D`` points ``[N, D]`` of the uniform grid of [0, 1]^D (endpoints included)."""
    if points < 2:
        raise InputError(f"a grid needs at least 2 points per axis, got {points}")
    axis = np.linspace(0.0, 1.0, points)
    mesh = np.meshgrid(*([axis] * dim), indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


def evaluate(f: Callable, x: np.ndarray) -> np.ndarray:
    """``f(x)`` as ``[N]`` float64; InputError naming what is wrong with it."""
    y = np.asarray(f(x), dtype=np.float64)
    if y.size != x.shape[0]:
        raise InputError(f"f must return one value per point: {x.shape[0]} points, {y.shape}")
    return y.reshape(x.shape[0])


def construct(
    f: Callable[[np.ndarray], np.ndarray],
    dim: int,
    grades: int,
    *,
    width: int | None = None,
    lipschitz: float | None = None,
    curvature: float | None = None,
    contraction: float = 0.75,
    refine: int | None = None,
    min_cells: int = 2,
    max_cells: int | None = None,
) -> ConstructedModel:
    """Build ``grades`` grades approximating ``f`` on [0, 1]^D (D = 1, 2, 3).

    ``f`` maps float64 points ``[N, D]`` to ``[N]`` values. Each grade is the thresholded hat
    contraction of the current residual (operator.py) on the coarsest dyadic grid (from
    ``min_cells`` cells per axis, and never coarser than the previous grade's) that certifies
    ``sup |e_k| <= contraction * sup |e_{k-1}|``, realised as a ReLU network of ``width``
    (default 5D; at least 3 for D = 1, D + 3 otherwise). ``lipschitz`` bounds
    ``sup |grad f|_1`` (``|f(x) - f(y)| <= lipschitz |x - y|_inf``); the guarantees hold when
    it is a true bound; None estimates it as twice the largest difference quotient on a fine
    lattice. ``curvature`` optionally bounds ``sup sum_ab |d_a d_b f|`` (a C^2 target), which
    tightens the sampling slack from first to second order in the lattice spacing. ``refine``
    (default 8, 4, 2 for D = 1, 2, 3) is how much finer than the grid the residual is sampled;
    ``max_cells`` (default 2^14, 2^9, 2^6) caps the grid.
    """
    if dim not in (1, 2, 3):
        raise InputError(f"dim must be 1, 2 or 3, got {dim!r}")
    width = 5 * dim if width is None else width
    refine = _REFINE[dim] if refine is None else refine
    max_cells = _ESTIMATE_CELLS[dim] if max_cells is None else max_cells
    _check(dim, grades, width, contraction, refine, min_cells, max_cells)
    _check_bound("lipschitz", lipschitz)
    _check_bound("curvature", curvature)
    lip_f = lipschitz if lipschitz is not None else 2.0 * _estimate(f, dim)
    built: list[ConstructedGrade] = []
    bound, cells = lip_f, min_cells
    for _ in range(grades):
        previous = list(built)

        def residual(x: np.ndarray, previous=previous) -> np.ndarray:
            e = evaluate(f, x)
            for g in previous:
                e -= g(x, method="operator")
            return e

        op = contraction_grade(
            residual, dim, lipschitz=bound, curvature=curvature, contraction=contraction,
            refine=refine, base=cells, max_cells=max_cells,
        )  # fmt: skip
        built.append(ConstructedGrade(op, realize(op.coeffs, width)))
        cells = op.cells
        bound = lip_f + _sum_lipschitz(built, cells, dim)
    settings = {
        "width": width,
        "contraction": contraction,
        "refine": refine,
        "lipschitz": lip_f,
        "lipschitz_estimated": lipschitz is None,
        "curvature": curvature,
    }
    return ConstructedModel(f, dim, built, settings)


def _sum_lipschitz(grades: list[ConstructedGrade], cells: int, dim: int) -> float:
    """A Lipschitz bound of ``g_1 + ... + g_k``: every grade's grid divides ``cells``, so the
    sum is piecewise linear on the Kuhn triangulation of that grid (kuhn.py)."""
    at = nodes(cells, dim)
    values = sum(hat_sum(g.operator.coeffs, at) for g in grades)
    return lipschitz_bound(np.reshape(values, (cells + 1,) * dim))


def _estimate(f: Callable, dim: int) -> float:
    """The largest ``sum_a |difference quotient along a|`` of ``f`` on a fine lattice."""
    cells = _ESTIMATE_CELLS[dim]
    samples = evaluate(f, grid(cells + 1, dim)).reshape((cells + 1,) * dim)
    return lattice_max_slope(samples, cells)


def _check_bound(name: str, value) -> None:
    if value is not None and not (isinstance(value, (int, float)) and 0 <= value < math.inf):
        raise InputError(f"{name} must be a finite number >= 0 or None, got {value!r}")


def _check(dim, grades, width, contraction, refine, min_cells, max_cells) -> None:
    if not isinstance(grades, int) or grades < 1:
        raise InputError(f"grades must be an integer >= 1, got {grades!r}")
    if not isinstance(width, int) or not min_width(dim) <= width:
        raise InputError(f"width must be an integer >= {min_width(dim)} for D = {dim}: {width!r}")
    if not 0.0 < contraction < 1.0:
        raise InputError(f"contraction must be in (0, 1), got {contraction!r}")
    if not isinstance(refine, int) or refine < 1:
        raise InputError(f"refine must be an integer >= 1, got {refine!r}")
    if not isinstance(min_cells, int) or not 1 <= min_cells <= max_cells:
        raise InputError(f"min_cells must be 1-{max_cells}, got {min_cells!r}")

"""One grade of the constructive scheme: the thresholded hat contraction of a residual.

Given the residual ``e`` (a callable on [0, 1]^D) and a bound ``L`` with
``|e(x) - e(y)| <= L |x - y|_inf``, a grid of ``n`` cells per axis (spacing ``h``) gives

    delta_i = sup { |e(x) - e(x_i)| : |x - x_i|_inf <= h }          (bounded from samples)
    c_i     = sign(e(x_i)) * max(0, |e(x_i)| - delta_i)               (soft threshold)
    g(x)    = sum_i c_i phi_i(x)                                      (Kuhn hats, kuhn.py)

Wherever ``phi_i(x) > 0`` and ``c_i != 0``, ``e(x)`` has the sign of ``c_i`` and ``|e(x)| >=
|c_i|``; as the hats add up to 1, ``g(x) = theta(x) e(x)`` with ``0 <= theta(x) <= 1``, so the new
residual ``e - g = (1 - theta) e`` never grows in magnitude, anywhere. Where ``|e(x)|`` is large,
``theta`` is close to 1: ``|e(x) - g(x)| <= min(|e(x)|, 2 max_{phi_i(x) > 0} delta_i)``, which
tends to 0 with ``h`` (docs/APPROXIMATION.md has the proof).

Everything the proof needs is bounded from samples of ``e`` on a lattice ``refine`` times finer
than the grid (spacing ``s = h / refine``; every point of [0, 1]^D is within ``s / 2`` of a
sample, in the max norm): ``delta_i`` is the largest sampled deviation in the cube ``|x -
x_i|_inf <= h`` plus a slack (``slack``: ``L s / 2``, or ``H s^2 / 2`` for a target with second
derivatives bounded by ``H``), and the new residual's sup is at most its largest sampled value
plus the same slack for ``e - g`` (``bound``). The grid is the coarsest one of a ladder whose
bound is at most ``contraction`` times the residual's largest sampled value (which is at most
its sup): that certifies the sup-norm contraction. These are true bounds when ``L`` is one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ...errors import InputError
from .kuhn import hat_sum, lipschitz_bound, nodes

Residual = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class GradeOperator:
    """One grade's contraction: ``coeffs`` ``[n + 1] * D`` on the grid of ``cells`` per axis,
    and what certified it: the residual's largest sample ``sup_sampled``, the sup ``bound`` of
    the new residual, the ``slack`` added to every ``delta_i``, and the residual's Lipschitz
    bound."""

    cells: int
    coeffs: np.ndarray
    sup_sampled: float
    bound: float
    slack: float
    lipschitz: float

    @property
    def active(self) -> int:
        """Nodes with a nonzero coefficient (the ones the network spends layers on)."""
        return int(np.count_nonzero(self.coeffs))

    def summary(self) -> dict:
        return {
            "cells": self.cells,
            "nodes": self.coeffs.size,
            "active_nodes": self.active,
            "residual_sup_sampled": self.sup_sampled,
            "new_residual_sup_bound": self.bound,
            "certified_factor": self.bound / self.sup_sampled if self.sup_sampled else 0.0,
            "slack": self.slack,
            "lipschitz_bound": self.lipschitz,
        }


def lattice(cells: int, dim: int) -> np.ndarray:
    """The ``(cells + 1)^D`` points ``[P, D]`` of spacing ``1 / cells`` (C order)."""
    return nodes(cells, dim)


def box_max(a: np.ndarray, radius: int) -> np.ndarray:
    """The largest entry of ``a`` within ``radius`` steps along every axis (the box clipped to
    the array), one axis at a time (a box's max is the max of the per-axis maxes)."""
    for axis in range(a.ndim):
        pad = [(0, 0)] * a.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(a, pad, mode="edge")
        windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * radius + 1, axis=axis)
        a = windows.max(axis=-1)
    return a


def _thresholded(samples: np.ndarray, refine: int, slack: float):
    """(nodal values, delta) ``[n + 1] * D`` each from lattice samples ``[n r + 1] * D``."""
    high = box_max(samples, refine)
    low = -box_max(-samples, refine)
    at_nodes = (slice(None, None, refine),) * samples.ndim
    values = samples[at_nodes]
    delta = np.maximum(high[at_nodes] - values, values - low[at_nodes]) + slack
    return values, delta


def slack(spacing: float, lipschitz: float, curvature: float | None) -> float:
    """How far ``e`` may stray, between samples ``spacing`` apart, beyond what they show:
    ``L s / 2`` (every point is within ``s / 2`` of a sample), or ``H s^2 / 2`` when ``f`` has
    ``sup sum_ab |d_a d_b f| <= H`` (the linear interpolation error on a lattice simplex, where
    the earlier grades are linear)."""
    first = lipschitz * spacing / 2
    return first if curvature is None else min(first, curvature * spacing**2 / 2)


def try_grid(residual: Residual, dim: int, cells: int, refine: int, lipschitz, curvature):
    """The thresholded coefficients on a grid of ``cells`` per axis, and their bounds.
    ``lipschitz`` bounds the residual's, ``curvature`` (or None) the target's second
    derivatives."""
    side = cells * refine
    points = lattice(side, dim)
    samples = residual(points).reshape((side + 1,) * dim)
    if not np.all(np.isfinite(samples)):
        raise InputError("the target returned a non-finite value on [0, 1]^D")
    sup = float(np.abs(samples).max())
    stray = slack(1 / side, lipschitz, curvature)
    values, delta = _thresholded(samples, refine, stray)
    coeffs = np.sign(values) * np.maximum(np.abs(values) - delta, 0.0)
    after = samples.reshape(-1) - hat_sum(coeffs, points)
    stray_after = slack(1 / side, lipschitz + lipschitz_bound(coeffs), curvature)
    bound = float(np.abs(after).max()) + stray_after
    return GradeOperator(cells, coeffs, sup, bound, stray, lipschitz)


def contraction_grade(
    residual: Residual,
    dim: int,
    *,
    lipschitz: float,
    curvature: float | None,
    contraction: float,
    refine: int,
    base: int,
    max_cells: int,
) -> GradeOperator:
    """The coarsest grid of ``base`` times 1, 2, 3, ... cells per axis whose certified bound
    is at most ``contraction`` times the residual's largest sample (a zero residual gives zero
    coefficients). Multiples of ``base`` keep the earlier grades' hats piecewise linear on the
    new grid's triangulation. InputError when ``max_cells`` is not enough."""
    cells = base
    while cells <= max_cells:
        grade = try_grid(residual, dim, cells, refine, lipschitz, curvature)
        if grade.sup_sampled == 0.0 or grade.bound <= contraction * grade.sup_sampled:
            return grade
        cells += base
    raise InputError(
        f"no grid up to {max_cells} cells per axis contracts the residual by {contraction}: "
        "raise max_cells or the contraction factor"
    )

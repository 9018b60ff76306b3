"""Piecewise-linear cutoffs on a uniform grid of [0, 1]^D: the Kuhn (Freudenthal) hat functions.

A grid of ``n`` cells per axis has the nodes ``i h`` (``i`` in ``{0..n}^D``, ``h = 1 / n``). The
hat of node ``i`` is, with ``u = (x - i h) / h``,

    phi_i(x) = max(0, 1 - max(0, u_1, ..., u_D) - max(0, -u_1, ..., -u_D)),

the nodal basis function of linear elements on the Kuhn triangulation of the grid (every cube
cut into the D! simplices ``x_{p1} >= ... >= x_{pD}``). The hats are continuous, piecewise
linear, vanish outside the open cube ``|u|_inf < 1``, and add up to exactly 1 on [0, 1]^D (a
partition of unity). For D = 1 they are the usual hats ``max(0, 1 - |u|)``.

``hat_sum`` evaluates ``sum_i c_i phi_i(x)`` in closed form: only the 2^D corners of the cell
holding ``x`` can have ``phi_i(x) > 0``.
"""

from __future__ import annotations

import itertools

import numpy as np


def nodes(n: int, dim: int) -> np.ndarray:
    """The grid's nodes ``[(n + 1)^D, D]`` in C order of the index ``i`` (float64)."""
    axis = np.arange(n + 1, dtype=np.float64) / n
    mesh = np.meshgrid(*([axis] * dim), indexing="ij")
    return np.stack([m.reshape(-1) for m in mesh], axis=1)


def hat(u: np.ndarray) -> np.ndarray:
    """``phi(u) [N]`` of scaled offsets ``u [N, D]`` (the hat of a node at ``u = 0``)."""
    up = np.maximum(u.max(axis=1), 0.0)
    down = np.maximum((-u).max(axis=1), 0.0)
    return np.maximum(1.0 - up - down, 0.0)


def _corners(dim: int) -> np.ndarray:
    """The 2^D cell-corner offsets ``[2^D, D]`` (integers 0/1)."""
    return np.array(list(itertools.product((0, 1), repeat=dim)), dtype=np.int64)


def hat_sum(coeffs: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``sum_i coeffs[i] phi_i(x)`` ``[N]`` float64 for ``x [N, D]`` in [0, 1]^D.

    ``coeffs`` has shape ``[n + 1] * D`` (one value per node); ``n`` is read from it.
    """
    dim = coeffs.ndim
    n = coeffs.shape[0] - 1
    scaled = x * n
    cell = np.clip(np.floor(scaled).astype(np.int64), 0, n - 1)
    out = np.zeros(x.shape[0])
    for corner in _corners(dim):
        node = cell + corner
        out += coeffs[tuple(node.T)] * hat(scaled - node)
    return out


def lattice_max_slope(values: np.ndarray, cells: int) -> float:
    """``sum_a max |difference along axis a| * cells`` of values ``[cells + 1] * D`` on a
    lattice of spacing ``1 / cells``."""
    return float(sum(np.abs(np.diff(values, axis=a)).max() for a in range(values.ndim)) * cells)


def lipschitz_bound(coeffs: np.ndarray) -> float:
    """A bound on ``sup |grad g|_1`` of ``g = sum_i coeffs[i] phi_i``, so that
    ``|g(x) - g(y)| <= bound * |x - y|_inf``.

    On a Kuhn simplex the partial derivative along axis ``a`` is the difference of the
    coefficients at the two ends of one grid edge along ``a``, over ``h``; so
    ``|grad g|_1 <= sum_a max |edge difference along a| / h``.
    """
    return lattice_max_slope(coeffs, coeffs.shape[0] - 1)

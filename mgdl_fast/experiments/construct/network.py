"""A grade's contraction ``sum_i c_i phi_i`` as an explicit fixed-width ReLU network.

Every hidden layer has the same ``width`` channels, laid out as

    [x_1 .. x_D | a | slot_1 | slot_2 | ... ]

``x`` is carried unchanged (ReLU(x) = x on [0, 1]^D), ``a = A + (sum of the terms added so far)``
is the accumulator, shifted by ``A = 2 max |c_i|`` so that it stays positive (a partial sum of
``c_i phi_i(x)`` is at most ``max |c_i|`` in magnitude, the hats adding up to 1), and each slot
computes one node's hat. Nodes go ``m`` at a time (one per slot) through a unit of D + 1 layers,
with ``u = (x - x_i) / h`` an affine function of the carried ``x``:

    layer 1:      rho = ReLU(u_1)                    P_1 = rho, Q_1 = rho - u_1
    layer j<=D:   rho = ReLU(P_{j-1} - u_j)           P_j = u_j + rho   (= max(P_{j-1}, u_j))
                  sig = ReLU(Q_{j-1} + u_j)           Q_j = -u_j + sig  (= max(Q_{j-1}, -u_j))
    layer D+1:    phi = ReLU(1 - P_D - Q_D)          (the Kuhn hat of kuhn.py)

and the next unit's first layer adds ``sum c_i phi_i`` of this unit to ``a``. The output layer
returns ``a - A`` plus the last unit's terms. A slot uses one channel for D = 1 and two for
D >= 2, so a width ``W`` holds ``m = W - 2`` nodes per unit for D = 1 and
``m = (W - D - 1) // 2`` for D >= 2; the least width is 3 (D = 1) or D + 3, and 5D leaves
``m >= 3`` everywhere. Depth is ``(D + 1) ceil(active nodes / m)`` hidden layers.

Read as MGDL, grade k+1 may read grade k's last hidden layer instead of ``x``: its first D
channels are ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import InputError


def min_width(dim: int) -> int:
    """The narrowest width this realisation can use (one node per unit)."""
    return 3 if dim == 1 else dim + 3


def slots(dim: int, width: int) -> int:
    """Nodes per unit at ``width``."""
    return width - 2 if dim == 1 else (width - dim - 1) // 2


@dataclass(frozen=True)
class ReluNetwork:
    """``y = w_out . h_L + b_out``, ``h_1 = relu(x @ w_in + b_in)``,
    ``h_{l+1} = relu(h_l @ w[l] + b[l])``: ``w_in [D, W]``, ``b_in [W]``, ``w [L-1, W, W]``,
    ``b [L-1, W]``, ``w_out [W]``, ``b_out`` (all float64)."""

    w_in: np.ndarray
    b_in: np.ndarray
    w: np.ndarray
    b: np.ndarray
    w_out: np.ndarray
    b_out: float

    @property
    def width(self) -> int:
        return self.b_in.shape[0]

    @property
    def depth(self) -> int:
        """Hidden layers."""
        return 1 + self.w.shape[0]

    @property
    def num_params(self) -> int:
        return self.w_in.size + self.b_in.size + self.w.size + self.b.size + self.w_out.size + 1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """``[N]`` float64 for ``x [N, D]`` float64."""
        h = np.maximum(x @ self.w_in + self.b_in, 0.0)
        for w, b in zip(self.w, self.b):
            h = np.maximum(h @ w + b, 0.0)
        return h @ self.w_out + self.b_out


class _Layer:
    """One affine map ``[fan_in] -> [width]`` being filled in (weights ``[fan_in, width]``)."""

    def __init__(self, fan_in: int, width: int):
        self.w = np.zeros((fan_in, width))
        self.b = np.zeros(width)

    def u(self, out: int, axis: int, node: np.ndarray, h: float, sign: float = 1.0) -> None:
        """Add ``sign * u_axis = sign * (x_axis - node_axis) / h`` to channel ``out`` (``x`` is
        in the first D channels of the input)."""
        self.w[axis, out] += sign / h
        self.b[out] -= sign * node[axis] / h


def _add_pq(layer: _Layer, out: int, j: int, which: str, coef: float, base, node, h) -> None:
    """Add ``coef * P_j`` (``which`` "P") or ``coef * Q_j`` ("Q") to channel ``out``, read from
    the previous layer (step ``j`` of the unit), whose slot starts at channel ``base``."""
    if j == 0:
        # P_0 = rho, Q_0 = rho - u_0
        layer.w[base, out] += coef
        if which == "Q":
            layer.u(out, 0, node, h, -coef)
    elif which == "P":
        # P_j = u_j + rho
        layer.w[base, out] += coef
        layer.u(out, j, node, h, coef)
    else:
        # Q_j = -u_j + sig
        layer.w[base + 1, out] += coef
        layer.u(out, j, node, h, -coef)


def _unit_layer(dim, width, step, fan_in, nodes, h, per_slot) -> _Layer:
    """Layer ``step`` (0..D) of a unit for ``nodes [m', D]``; carries ``x`` and ``a``."""
    layer = _Layer(fan_in, width)
    for axis in range(dim):
        layer.w[axis, axis] = 1.0
    if fan_in > dim:
        layer.w[dim, dim] = 1.0
    for t, node in enumerate(nodes):
        base = dim + 1 + t * per_slot
        if step == 0:
            # Steps count axes from 0 here: rho = ReLU(u_0)
            layer.u(base, 0, node, h)
        elif step < dim:
            # rho = ReLU(P_{j-1} - u_j), sig = ReLU(Q_{j-1} + u_j)
            _add_pq(layer, base, step - 1, "P", 1.0, base, node, h)
            layer.u(base, step, node, h, -1.0)
            _add_pq(layer, base + 1, step - 1, "Q", 1.0, base, node, h)
            layer.u(base + 1, step, node, h, 1.0)
        else:
            # phi = ReLU(1 - P_{D-1} - Q_{D-1})
            layer.b[base] += 1.0
            _add_pq(layer, base, step - 1, "P", -1.0, base, node, h)
            _add_pq(layer, base, step - 1, "Q", -1.0, base, node, h)
    return layer


def realize(coeffs: np.ndarray, width: int) -> ReluNetwork:
    """The network of ``sum_i coeffs[i] phi_i`` (``coeffs [n + 1] * D``) at ``width``."""
    dim, n = coeffs.ndim, coeffs.shape[0] - 1
    if width < min_width(dim):
        raise InputError(f"width {width} is below this construction's least {min_width(dim)}")
    h, m, per_slot = 1.0 / n, slots(dim, width), 1 if dim == 1 else 2
    grid = np.stack(np.unravel_index(np.flatnonzero(coeffs), coeffs.shape), axis=1) * h
    values = coeffs[coeffs != 0]
    shift = 2.0 * float(np.abs(values).max()) if values.size else 0.0
    units = [slice(s, s + m) for s in range(0, max(len(values), 1), m)]
    layers: list[_Layer] = []
    for k, unit in enumerate(units):
        for step in range(dim + 1):
            fan_in = dim if not layers else width
            layer = _unit_layer(dim, width, step, fan_in, grid[unit], h, per_slot)
            if not layers:
                layer.b[dim] = shift
            elif step == 0:
                _add_terms(layer.w[:, dim], values[units[k - 1]], dim, per_slot)
            layers.append(layer)
    w_out = np.zeros(width)
    w_out[dim] = 1.0
    _add_terms(w_out, values[units[-1]], dim, per_slot)
    first, rest = layers[0], layers[1:]
    stack = np.stack([layer.w for layer in rest]) if rest else np.zeros((0, width, width))
    biases = np.stack([layer.b for layer in rest]) if rest else np.zeros((0, width))
    return ReluNetwork(first.w, first.b, stack, biases, w_out, -shift)


def _add_terms(column: np.ndarray, values: np.ndarray, dim: int, per_slot: int) -> None:
    """Add ``sum_t values[t] phi_t`` (slot t's hat channel) to the output ``column``."""
    for t, value in enumerate(values):
        column[dim + 1 + t * per_slot] += value

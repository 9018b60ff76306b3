"""Test cases for the op x backend tests, generated from each backend's declared capabilities.

``POOL`` holds candidate grades (awkward N, coordinates and feature inputs, 1-4 hidden layers,
1-4 outputs, widths that are and are not multiples of 16 or powers of two). A backend is tested
on every case it declares it serves; on the others, binding must raise with its reasons.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from mgdl_fast import BlockParams, BlockShape, Options, backends, testing

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")

# (N, D, W, L, C)
POOL = [
    (1, 2, 16, 1, 1),
    (17, 3, 16, 2, 3),
    (255, 2, 32, 3, 1),
    (40, 32, 32, 2, 2),
    (33, 1, 48, 4, 4),
    (70, 16, 16, 4, 1),
    (20, 64, 64, 1, 1),
    (9, 5, 16, 1, 1),
    (12, 2, 40, 1, 1),
]


@dataclass(frozen=True)
class Case:
    """One backend on one grade, with the options it is checked at."""

    backend: str
    n: int
    shape: BlockShape
    options: Options

    @property
    def id(self) -> str:
        s = self.shape
        return f"{self.backend}-N{self.n}-D{s.in_dim}-W{s.width}-L{s.hidden_layers}-C{s.out_dim}"

    def bind(self, input_dtype: torch.dtype = torch.float32, rows: int | None = None):
        return backends.bind(
            self.shape, device=DEVICE, rows=rows or self.n, input_dtype=input_dtype,
            options=self.options, backend=self.backend,
        )  # fmt: skip

    def inputs(self, seed: int = 0, x_dtype: torch.dtype = torch.float32):
        """Parameters, inputs (coordinates in [0, 1), or ReLU features) and targets."""
        params = BlockParams.init(self.shape, seed=seed, device=DEVICE)
        gen = torch.Generator().manual_seed(seed + 1)
        d = self.shape.in_dim
        if d == self.shape.width:
            x = torch.relu(torch.randn(self.n, d, generator=gen))
        else:
            x = torch.rand(self.n, d, generator=gen)
        y = torch.rand(self.n, self.shape.out_dim, generator=gen)
        return params, x.to(DEVICE, x_dtype), y.to(DEVICE)


def checked_options(name: str) -> Options:
    """fp32 products where a backend has them (compared at fp32 tolerance), else its own."""
    backend = backends.get_backend(name)
    precisions = backend.capabilities.precisions if backend else ("fp32",)
    return Options("fp32" if "fp32" in precisions else precisions[0])


def _available(name: str) -> str | None:
    return backends.unavailable_reason(name)


def cases(*, served: bool = True) -> list:
    """pytest params: every (backend, grade) a backend serves (``served``) or refuses."""
    params = []
    for name in backends.backend_names():
        why = _available(name)
        if why is not None:
            params.append(pytest.param(None, id=f"{name}-unavailable", marks=pytest.mark.skip(why)))
            continue
        options = checked_options(name)
        for n, d, w, layers, c in POOL:
            case = Case(name, n, BlockShape(d, w, layers, c), options)
            refused = backends.reasons(name, case.shape, DEVICE, torch.float32, options)
            if bool(refused) != served:
                params.append(pytest.param(case, id=case.id))
    return params


def backend_params() -> list:
    """pytest params: every backend that can run here (the others skipped with the reason)."""
    out = []
    for name in backends.backend_names():
        why = _available(name)
        marks = [pytest.mark.skip(why)] if why else []
        out.append(pytest.param(name, id=name, marks=marks))
    return out


def assert_matches(case: Case, actual, expected64, lowp=None, msg: str = "") -> None:
    """fp32 options: the tolerance table; reduced precision: the flash-attention rule against
    ``lowp`` (the same reference computed in that precision)."""
    if case.options.precision == "fp32":
        testing.assert_close(actual, expected64, torch.float32, msg=msg)
    else:
        testing.assert_close_to_oracle(actual, expected64, lowp, msg=msg)


def round_to(t: torch.Tensor, precision: str) -> torch.Tensor:
    """``t`` rounded to a product precision, kept in its dtype: bf16 to nearest even; tf32 by
    truncating 13 mantissa bits (what Hopper's tensor cores do to fp32 operands, T7)."""
    if precision == "bf16":
        return t.to(torch.bfloat16).to(t.dtype)
    if precision == "tf32":
        bits = t.float().view(torch.int32) & ~0x1FFF
        return bits.view(torch.float32).to(t.dtype)
    return t


def lowp_reference(shape, flat, x, precision, *, grad_out=None, y=None):
    """The block in float64 with a reduced-precision product's rounding at the points where
    the fast paths round: every product operand (``round_to``), and for bf16 also every stored
    activation, product result and backpropagated gradient (bf16 paths keep them in bf16).
    The first layer of a 1-3 coordinate input stays exact (every backend computes it in fp32).
    Returns ``(out, features, loss or None, dL/dparams, dL/dx)``: the flash-attention rule's
    reference. ``grad_out`` (or ``y`` for the 0.5 * MSE step) drives the backward; without
    either the gradients are None."""
    weights, biases = shape.views(flat.detach().double())
    op = lambda t: round_to(t, precision)  # noqa: E731
    keep = op if precision == "bf16" else (lambda t: t)
    x = x.detach().double()
    small = shape.in_dim != shape.width
    pre = x @ weights[0] + biases[0] if small else op(x) @ op(weights[0]) + keep(biases[0])
    hs = [op(x), torch.relu(keep(pre))]
    for w, b in zip(weights[1:-1], biases[1:-1]):
        hs.append(torch.relu(keep(op(hs[-1]) @ op(w) + keep(b))))
    out = keep(op(hs[-1]) @ op(weights[-1])) + biases[-1]
    loss = None
    if y is not None:
        diff = out - y.double()
        loss, grad_out = 0.5 * torch.mean(diff * diff), diff / diff.numel()
    if grad_out is None:
        return out, hs[-1], None, None, None
    grad_out = grad_out.double()
    g_op, grads = op(grad_out), []
    grads.append((keep(op(hs[-1]).T @ g_op), grad_out.sum(0)))
    g = keep(g_op @ op(weights[-1]).T)
    for layer in range(len(weights) - 2, -1, -1):
        g = g * (hs[layer + 1] > 0)
        grads.append((keep(hs[layer].T @ op(g)), keep(g.sum(0))))
        if layer > 0:
            g = keep(op(g) @ op(weights[layer]).T)
    grad_x = keep(op(g) @ op(weights[0]).T)
    flat_grad = torch.cat([torch.cat([dw.reshape(-1), db]) for dw, db in reversed(grads)])
    return out, hs[-1], loss, flat_grad, grad_x

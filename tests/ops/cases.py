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


def lowp_apply(flat: torch.Tensor, x: torch.Tensor, shape: BlockShape, precision: str):
    """The block with its W x W products' operands rounded to ``precision`` (fp32 maths
    otherwise): the reduced-precision reference of the flash-attention rule. Returns
    ``(out [N, C], features [N, W])``, differentiable in ``flat`` and ``x``."""
    weights, biases = shape.views(flat)
    h = x.float()
    for layer, (w, b) in enumerate(zip(weights[:-1], biases[:-1])):
        if layer > 0 or shape.in_dim == shape.width:
            h = round_to(h, precision) @ round_to(w, precision)
        else:
            h = h @ w
        h = torch.relu(h + b)
    return h @ weights[-1] + biases[-1], h

"""Shared pieces of the Triton tests: engines planned exactly as for an H100, inputs, and the
reduced-precision reference of the flash-attention rule.

On a CPU machine the engines run under the Triton interpreter with the GPU's own tile configs
and 132 persistent programs (``Target(True, 132)``), so the paths a GPU runs (several tiles per
program, programs without a tile, padded chunks, scratch layers) are the ones tested.

The product-precision rule (T7): the kernels round both operands of every W x W product to the
product precision explicitly, bf16 to nearest even and tf32 to nearest with ties away from zero
(cvt.rna, not the tensor cores' truncation); ``lowp`` computes the block in float64 with exactly
those roundings, and a kernel passes when its error against the float64 oracle is at most twice
that reference's own error (plus a small floor, ``testing.assert_close_to_oracle``).
"""

from __future__ import annotations

import numpy as np
import torch

from mgdl_fast import BlockParams, BlockShape, Options, backends
from mgdl_fast.backends.triton.engine import TritonEngine
from mgdl_fast.backends.triton.plans import Target

from ... import oracle

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SM90_PROGRAMS = 132


def engine(shape, rows, precision="fp32", deterministic=True, input_dtype=torch.float32):
    """A Triton engine for ``rows`` rows: the real one on a GPU; under the interpreter one
    planned for an H100's 132 programs."""
    options = Options(precision, deterministic)
    if DEVICE.type == "cuda":
        return backends.bind(shape, device=DEVICE, rows=rows, input_dtype=input_dtype,
                             options=options, backend="triton")  # fmt: skip
    target = Target(True, SM90_PROGRAMS)
    return TritonEngine(shape, DEVICE, input_dtype, rows, options, interpret=True, target=target)


def inputs(n, d, w, layers, c, seed=0, x_dtype=torch.float32):
    """(shape, params, x, y): coordinates in [0, 1) for D <= 3, ReLU features for D == W."""
    shape = BlockShape(d, w, layers, c)
    params = BlockParams.init(shape, seed=seed, device=DEVICE)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.relu(torch.randn(n, d, generator=gen)) if d == w else torch.rand(n, d, generator=gen)
    y = torch.rand(n, c, generator=gen)
    return shape, params, x.to(DEVICE, x_dtype), y.to(DEVICE)


def numpy(*tensors):
    return [t.double().cpu().numpy() for t in tensors]


def round_to(a: np.ndarray, precision: str) -> np.ndarray:
    """``a`` rounded through fp32 to the product precision, as the kernels round operands."""
    t = torch.from_numpy(np.ascontiguousarray(a)).float()
    if precision == "bf16":
        t = t.bfloat16().float()
    elif precision == "tf32":
        t = ((t.view(torch.int32) + 0x1000) & -0x2000).view(torch.float32)
    return t.double().numpy()


def lowp(flat, x, shape, grad_out=None, y=None, precision="bf16"):
    """The block in float64 with every W x W product's operands rounded to ``precision``:
    ``(out, features, dL/dparams, dL/dx)``; the gradient is of 0.5 * MSE against ``y`` or for
    ``grad_out``."""
    layers = oracle.unpack(flat, shape)
    square = [i > 0 or shape.in_dim == shape.width for i in range(shape.hidden_layers)]

    def mm(a, b, i):
        return round_to(a, precision) @ round_to(b, precision) if square[i] else a @ b

    hs = [x]
    for i, (w, b) in enumerate(layers[:-1]):
        hs.append(np.maximum(mm(hs[-1], w, i) + b, 0.0))
    w_o, b_o = layers[-1]
    out = hs[-1] @ w_o + b_o
    g = (out - y) / (out - y).size if grad_out is None else grad_out
    grads = [(hs[-1].T @ g, g.sum(axis=0))]
    g = g @ w_o.T
    for i in range(shape.hidden_layers - 1, -1, -1):
        w, _ = layers[i]
        g = g * (hs[i + 1] > 0)
        grads.append((mm(hs[i].T, g, i), g.sum(axis=0)))
        g = mm(g, w.T, i)
    grads.reverse()
    flat_grad = np.concatenate([np.concatenate([dw.ravel(), db]) for dw, db in grads])
    return out, hs[-1], flat_grad, g

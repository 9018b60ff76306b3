"""The block as a differentiable op over any backend: autograd in one place.

Each call checks its operands with the checks every backend shares (one ``InputError`` per
problem, the same on every backend) and runs on an engine bound for that shape, device, dtype
and row count (kept for the next call with the same key).
"""

from __future__ import annotations

from collections import OrderedDict

import torch

from .backends import bind, requested_backend
from .backends.base import INPUT_DTYPES, Options, check_params, check_tensor
from .backends.engine import Engine
from .block import BlockParams, BlockShape

_MAX_ENGINES = 8
_engines: OrderedDict[tuple, Engine] = OrderedDict()


def engine_for(shape: BlockShape, x: torch.Tensor, backend: str | None) -> Engine:
    """The engine serving ``x`` (bound on first use of this shape, device, dtype and N)."""
    options = Options.from_env()
    key = (shape, x.device, x.dtype, x.shape[0], requested_backend(backend), options)
    engine = _engines.pop(key, None)
    if engine is None:
        engine = bind(
            shape, device=x.device, rows=x.shape[0], input_dtype=x.dtype, options=options,
            backend=backend,
        )  # fmt: skip
    _engines[key] = engine
    while len(_engines) > _MAX_ENGINES:
        _engines.popitem(last=False)
    return engine


class _BlockFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, flat, shape: BlockShape, backend: str | None):
        check_tensor("x", x, rows=None, cols=shape.in_dim, dtypes=INPUT_DTYPES, device=x.device)
        check_params(flat, shape, x.device)
        engine = engine_for(shape, x, backend)
        out = torch.empty(x.shape[0], shape.out_dim, device=x.device)
        engine.forward(x, flat, out)
        ctx.save_for_backward(x, flat)
        ctx.shape, ctx.backend = shape, backend
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, flat = ctx.saved_tensors
        engine = engine_for(ctx.shape, x, ctx.backend)
        grad = torch.empty_like(flat)
        grad_x = torch.empty(x.shape, device=x.device) if ctx.needs_input_grad[0] else None
        engine.backward(x, flat, grad_out.float().contiguous(), grad, grad_x)
        if grad_x is not None:
            grad_x = grad_x.to(x.dtype)
        return grad_x, grad, None, None


def block_forward(
    x: torch.Tensor, params: BlockParams, *, backend: str | None = None
) -> torch.Tensor:
    """Block output ``[N, C]`` fp32 for ``x [N, D]`` (fp32, or bf16 cached features),
    differentiable w.r.t. ``x`` and ``params.flat``.

    The forward and backward run on the backend chosen by ``backend`` (or ``MGDL_FAST_BACKEND``,
    or auto); the backward recomputes the forward rather than storing activations.
    """
    return _BlockFunction.apply(x, params.flat, params.shape, backend)

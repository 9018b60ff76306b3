"""Differentiable block op: autograd in one place, over whichever backend serves the inputs."""

from __future__ import annotations

import torch

from .block import BlockParams, BlockShape
from .dispatch import resolve


class _BlockFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, flat, shape: BlockShape, backend: str | None):
        params = BlockParams(shape, flat)
        _, fwd = resolve("block_fwd", x, params, backend=backend)
        ctx.save_for_backward(x, flat)
        ctx.shape, ctx.backend = shape, backend
        return fwd(x, params)

    @staticmethod
    def backward(ctx, grad_out):
        x, flat = ctx.saved_tensors
        params = BlockParams(ctx.shape, flat)
        _, bwd = resolve("block_bwd", x, params, backend=ctx.backend)
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        grads = bwd(x, params, grad_out.contiguous(), grad_x=grad_x)
        return grad_x, grads.flat, None, None


def block_forward(
    x: torch.Tensor, params: BlockParams, *, backend: str | None = None
) -> torch.Tensor:
    """Block output ``[N, C]`` for ``x [N, D]``, differentiable w.r.t. ``x`` and ``params.flat``.

    The forward and backward run on the backend chosen by ``backend`` (or ``MGDL_FAST_BACKEND``,
    or auto); the backward recomputes the forward rather than storing activations.
    """
    return _BlockFunction.apply(x, params.flat, params.shape, backend)

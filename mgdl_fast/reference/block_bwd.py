"""Reference block backward from a given dL/dout, recomputing the forward."""

from __future__ import annotations

import torch

from ..block import BlockParams
from ._layers import backward, forward_keep


def block_bwd(
    x: torch.Tensor,
    params: BlockParams,
    grad_out: torch.Tensor,
    *,
    grad_params: BlockParams | None = None,
    grad_x: torch.Tensor | None = None,
) -> BlockParams:
    """Gradients of a loss through the block, given ``grad_out = dL/dout [N, C]``.

    The forward is recomputed (activations are not stored between calls), as the fused kernels
    do for losses that couple pixels. Writes dL/dparams into ``grad_params`` (allocated when
    None) and, when given, dL/dx into ``grad_x [N, D]``. Returns ``grad_params``.
    """
    if grad_params is None:
        grad_params = params.zeros_like()
    hs, _ = forward_keep(x, params)
    backward(hs, params, grad_out.to(params.flat.dtype), grad_params, grad_x)
    return grad_params

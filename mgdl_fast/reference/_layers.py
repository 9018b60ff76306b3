"""Manual forward/backward of a block, shared by the reference ops.

Written with out-of-autograd torch ops into reused scratch buffers, so one training step costs
the GEMMs and a few elementwise passes with no graph bookkeeping and no page faults.
"""

from __future__ import annotations

import torch

from ..block import BlockParams
from ._scratch import scratch


def forward_keep(x: torch.Tensor, params: BlockParams) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Forward keeping every hidden activation, all in scratch buffers.

    Returns ``hs = [h_0 = x, h_1, ..., h_L]`` (``h_0`` cast to the params' dtype) and the output
    ``[N, C]``; both are only valid until the next reference op on this thread.
    """
    dtype, n = params.flat.dtype, x.shape[0]
    h = x if x.dtype == dtype else scratch("x", tuple(x.shape), dtype, x.device).copy_(x)
    hs = [h]
    for layer, (w, b) in enumerate(zip(params.weights[:-1], params.biases[:-1])):
        buf = scratch(f"h{layer + 1}", (n, w.shape[1]), dtype, x.device)
        h = torch.addmm(b, h, w, out=buf).relu_()
        hs.append(h)
    out = scratch("out", (n, params.shape.out_dim), dtype, x.device)
    return hs, torch.addmm(params.biases[-1], h, params.weights[-1], out=out)


def backward(
    hs: list[torch.Tensor],
    params: BlockParams,
    grad_out: torch.Tensor,
    grad_params: BlockParams,
    grad_x: torch.Tensor | None,
) -> None:
    """Write dL/dparams into ``grad_params`` (and dL/dx into ``grad_x``) from dL/dout ``[N, C]``."""
    g = grad_out
    last = len(params.weights) - 1
    for layer in range(last, -1, -1):
        torch.mm(hs[layer].T, g, out=grad_params.weights[layer])
        torch.sum(g, dim=0, out=grad_params.biases[layer])
        if layer > 0:
            buf = scratch(f"g{layer % 2}", tuple(hs[layer].shape), g.dtype, g.device)
            g = torch.mm(g, params.weights[layer].T, out=buf)
            # ReLU backward in place: h_l = 0 exactly where the pre-activation was <= 0.
            torch.ops.aten.threshold_backward.grad_input(g, hs[layer], 0.0, grad_input=g)
    if grad_x is not None:
        torch.mm(g, params.weights[0].T, out=grad_x)

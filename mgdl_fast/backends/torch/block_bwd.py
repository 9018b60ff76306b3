"""Torch block backward from a given dL/dout, recomputing the forward."""

from __future__ import annotations

from ._layers import backward, forward_keep


def block_bwd(x, weights, biases, grad_out, grad_w, grad_b, grad_x, views) -> None:
    """Gradients of a loss through the block given ``grad_out = dL/dout [n, C]``: dL/dparams
    into the ``grad_w``/``grad_b`` views and, when given, dL/dx into ``grad_x [n, D]``. The
    forward is recomputed (activations are not stored between calls), as the fused kernels do
    for losses that couple pixels."""
    hs, _ = forward_keep(x, weights, biases, views)
    backward(hs, weights, grad_out, grad_w, grad_b, grad_x, views)

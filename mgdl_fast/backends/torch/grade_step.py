"""Torch fused training step for the pointwise loss 0.5 * mean((out - y)^2)."""

from __future__ import annotations

import torch

from ._layers import Buffers, backward, forward_keep


def grade_step(x, y, weights, biases, grad_w, grad_b, bufs: Buffers):
    """Loss and parameter gradient of one full-batch step for ``x [n, D]`` and ``y [n, C]``:
    dL/dparams into the ``grad_w``/``grad_b`` views, the loss into ``bufs.loss`` (0-dim, on
    the device: no host sync), which is returned."""
    n = x.shape[0]
    views = bufs.take(n)
    hs, out = forward_keep(x, weights, biases, views)
    diff = out.sub_(y)
    squares = bufs.squares[:n]
    torch.mul(diff, diff, out=squares)
    torch.mean(squares, dim=(0, 1), out=bufs.loss).mul_(bufs.half)
    torch.div(diff, bufs.count(y.numel()), out=diff)
    backward(hs, weights, diff, grad_w, grad_b, None, views)
    return bufs.loss

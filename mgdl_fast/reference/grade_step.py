"""Reference fused training step for the pointwise loss 0.5 * mean((out - y)^2)."""

from __future__ import annotations

import torch

from ..block import BlockParams
from ._layers import backward, forward_keep


def grade_step(
    x: torch.Tensor,
    y: torch.Tensor,
    params: BlockParams,
    *,
    grad_params: BlockParams | None = None,
) -> torch.Tensor:
    """Loss and parameter gradient of one full-batch step.

    ``x [N, D]`` inputs (fp32 or bf16), ``y [N, C]`` targets. Writes
    d(0.5 * mean((out - y)^2))/dparams into ``grad_params`` (allocated when None; read it back
    from the argument) and returns the loss as a 0-dim tensor on the device, so callers can
    avoid a host sync every step.
    """
    if grad_params is None:
        grad_params = params.zeros_like()
    hs, out = forward_keep(x, params)
    diff = out.sub_(y)
    loss = 0.5 * torch.mean(diff * diff)
    backward(hs, params, diff.div_(y.numel()), grad_params, None)
    return loss

"""Torch optimizer updates on a grade's flat parameter vector (all tensors ``[P]`` fp32)."""

from __future__ import annotations

import torch


def adam_update(params, grad, state) -> None:
    """One bias-corrected Adam update in place at ``state.step`` (already advanced):
    ``x -= step_size * m / (sqrt(v / bias_correction2) + eps)``, the step-dependent scalars
    read from device tensors. ``state.scratch`` holds the two temporaries."""
    m, v = state.exp_avg, state.exp_avg_sq
    denom, delta = state.scratch[0], state.scratch[1]
    m.lerp_(grad, 1.0 - state.beta1)
    v.mul_(state.beta2_f32).addcmul_(grad, grad, value=1.0 - state.beta2)
    torch.div(v, state.bias_correction2, out=denom).sqrt_().add_(state.eps_f32)
    torch.mul(m, state.step_size, out=delta).div_(denom)
    params.sub_(delta)


def gd_update(params, grad, state) -> None:
    """Plain gradient descent ``x -= lr * g`` in place."""
    params.add_(grad, alpha=-state.lr)

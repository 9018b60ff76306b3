"""Reference optimizer updates on a grade's flat parameter vector (all tensors ``[P]``)."""

from __future__ import annotations

import torch


def adam_step(
    params: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    *,
    step: int,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> None:
    """One bias-corrected Adam update in place (``step`` counts from 1).

    Matches jax.example_libraries.optimizers.adam:
    ``x -= lr * m_hat / (sqrt(v_hat) + eps)``.
    """
    exp_avg.lerp_(grad, 1.0 - beta1)
    exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
    denom = (exp_avg_sq / (1.0 - beta2**step)).sqrt_().add_(eps)
    params.addcdiv_(exp_avg, denom, value=-lr / (1.0 - beta1**step))


def gd_step(params: torch.Tensor, grad: torch.Tensor, *, lr: float) -> None:
    """Plain gradient descent ``x -= lr * g`` in place."""
    params.add_(grad, alpha=-lr)

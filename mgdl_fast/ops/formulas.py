"""Derivatives the engines do not compute, from the plain-torch specification (spec.py).

The engines compute a block's forward, its backward from ``dL/dout`` and a fused MSE step.
Everything beyond (double backward, forward-mode tangents, gradients through the features
output or through a training step) is written here in plain torch ops, differentiable to any
order, on any device, in fp32 (bf16 inputs are computed in fp32, their gradients cast back).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..block import BlockShape
from ..spec import block_apply


def _zeros(t: Tensor | None, like: Tensor) -> Tensor:
    return torch.zeros_like(like) if t is None else t


def block_vjp(x: Tensor, flat: Tensor, grad_out: Tensor, shape: BlockShape) -> tuple[Tensor, ...]:
    """``(dL/dx [N, D], dL/dflat [P])`` from ``grad_out = dL/dout [N, C]``."""
    vjp = torch.func.vjp(lambda x, flat: block_apply(flat, x, shape), x, flat)[1]
    return vjp(grad_out)


def block_bwd_vjp(
    x: Tensor,
    flat: Tensor,
    grad_out: Tensor,
    shape: BlockShape,
    gg_flat: Tensor | None,
    gg_x: Tensor | None,
) -> tuple[Tensor, ...]:
    """The backward of ``block_vjp``: ``(d/dx, d/dflat, d/dgrad_out)`` of
    ``<gg_x, dL/dx> + <gg_flat, dL/dflat>`` (None: zero)."""
    vjp = torch.func.vjp(lambda x, f, g: block_vjp(x, f, g, shape), x, flat, grad_out)[1]
    return vjp((_zeros(gg_x, x), _zeros(gg_flat, flat)))


def block_bwd_jvp(
    x: Tensor,
    flat: Tensor,
    grad_out: Tensor,
    shape: BlockShape,
    tangents: tuple[Tensor | None, Tensor | None, Tensor | None],
) -> tuple[Tensor, ...]:
    """Forward-mode tangents of ``block_vjp``'s ``(dL/dx, dL/dflat)`` (Hessians of a loss
    through ``jacfwd(jacrev(...))``)."""
    primals = (x, flat, grad_out)
    filled = tuple(_zeros(t, p) for t, p in zip(tangents, primals))
    return torch.func.jvp(lambda x, f, g: block_vjp(x, f, g, shape), primals, filled)[1]


def block_jvp(
    x: Tensor,
    flat: Tensor,
    x_t: Tensor | None,
    flat_t: Tensor | None,
    shape: BlockShape,
) -> tuple[Tensor, Tensor]:
    """Tangents ``(out_t [N, C], features_t [N, W])`` of the block at ``(x, flat)`` along
    ``(x_t, flat_t)`` (None: zero), by forward-mode through each layer."""
    weights, biases = shape.views(flat)
    d_weights, d_biases = shape.views(_zeros(flat_t, flat))
    h = x.float()
    dh = _zeros(x_t, x).float()
    for w, b, dw, db in zip(weights[:-1], biases[:-1], d_weights[:-1], d_biases[:-1]):
        z = h @ w + b
        dz = dh @ w + h @ dw + db
        h, dh = torch.relu(z), dz * (z > 0)
    return dh @ weights[-1] + h @ d_weights[-1] + d_biases[-1], dh


def features_vjp(
    x: Tensor,
    flat: Tensor,
    shape: BlockShape,
    grad_out: Tensor | None,
    grad_features: Tensor | None,
) -> tuple[Tensor, ...]:
    """``(dL/dx, dL/dflat)`` of a loss of both outputs of ``block_fwd_features``."""
    out, vjp = torch.func.vjp(
        lambda x, flat: block_apply(flat, x, shape, return_features=True), x, flat
    )[:2]
    return vjp((_zeros(grad_out, out[0]), _zeros(grad_features, out[1]).float()))


def _step(x: Tensor, y: Tensor, flat: Tensor, shape: BlockShape) -> tuple[Tensor, Tensor]:
    def loss(flat: Tensor) -> Tensor:
        return 0.5 * torch.mean((block_apply(flat, x, shape) - y) ** 2)

    grad, value = torch.func.grad_and_value(loss)(flat)
    return value, grad


def grade_step_vjp(
    x: Tensor,
    y: Tensor,
    flat: Tensor,
    shape: BlockShape,
    grad_loss: Tensor | None,
    grad_grad: Tensor | None,
) -> tuple[Tensor, ...]:
    """``(d/dx, d/dy, d/dflat)`` of ``grad_loss * loss + <grad_grad, dloss/dflat>``."""
    (loss, grad), vjp = torch.func.vjp(lambda x, y, f: _step(x, y, f, shape), x, y, flat)[:2]
    return vjp((_zeros(grad_loss, loss), _zeros(grad_grad, grad)))

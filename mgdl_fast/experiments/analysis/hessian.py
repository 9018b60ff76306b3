"""The Hessian of a grade's training loss w.r.t. its flat parameters, by torch.func.

A grade's loss is ``L(theta) = 0.5 * mean((block(theta, x) - y)^2)`` with ``x [N, D]`` the
frozen inputs (coordinates for grade 1 and SGDL, the previous grade's cached last-hidden features
otherwise) and ``y [N, C]`` the residual target: earlier grades are constants, so this is
exactly the Hessian the papers' iteration matrix ``J = I - eta * H`` is built from (PROTOCOL 4).
SGDL is the one-block case. ``theta [P]`` uses BlockParams' flat layout.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.func import grad, vmap

from ...block import BlockShape
from ...spec import block_apply

# Chunks of Hessian columns are computed by one vmapped HVP; this bounds the intermediate
# activations (chunk x N x W per layer) rather than the FLOPs.
_CHUNK_BYTES = 256 << 20

LossFn = Callable[[torch.Tensor], torch.Tensor]


def grade_loss(shape: BlockShape, x: torch.Tensor, y: torch.Tensor) -> LossFn:
    """``theta [P] -> 0.5 * mean((block(theta, x) - y)^2)`` (0-dim), in ``theta``'s dtype.

    ``x [N, D]`` and ``y [N, C]`` are cast to the dtype of ``theta`` on each call, so the
    same closure serves float32 and float64 evaluations.
    """

    def loss(theta: torch.Tensor) -> torch.Tensor:
        out = block_apply(theta, x.to(theta.dtype), shape)
        return 0.5 * torch.mean((out - y.to(theta.dtype)) ** 2)

    return loss


def hvp_fn(loss: LossFn) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """``(theta [P], v [P]) -> H(theta) v [P]`` as the gradient of ``<grad L(theta), v>``
    (reverse over reverse; never forms H).

    Forward over reverse (``jvp`` of ``grad``) costs the same here (measured on CPU at P = 1k to
    116k) but makes torch load its forward-mode decompositions through deprecated TorchScript.
    """
    gradient = grad(loss)

    def hvp(theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return grad(lambda t: torch.dot(gradient(t), v))(theta)

    return hvp


def column_chunk(shape: BlockShape, n: int, itemsize: int) -> int:
    """How many Hessian columns one vmapped HVP computes within ``_CHUNK_BYTES``."""
    # Activations of every layer and their first-backward counterparts, kept for the second.
    per_column = 4 * n * (shape.width * shape.hidden_layers + shape.out_dim) * itemsize
    return max(1, min(shape.num_params, _CHUNK_BYTES // max(per_column, 1)))


def dense_hessian(
    shape: BlockShape,
    theta: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    chunk: int | None = None,
) -> torch.Tensor:
    """The exact Hessian ``[P, P]`` of ``grade_loss`` at ``theta [P]``, in ``theta``'s dtype.

    Columns are Hessian-vector products with unit vectors, ``chunk`` at a time under vmap (the
    same arithmetic as torch.func.hessian with bounded memory). The result is symmetrised
    (forward-over-reverse columns agree with rows to rounding only). For the PROTOCOL 4 sizes
    (P <= ~7k) this is minutes at most on a CPU; larger networks need ``lanczos``.
    """
    theta = theta.detach()
    hvp = hvp_fn(grade_loss(shape, x, y))
    batched = vmap(lambda v: hvp(theta, v))
    p = theta.numel()
    chunk = chunk or column_chunk(shape, x.shape[0], theta.element_size())
    hessian = torch.empty(p, p, dtype=theta.dtype, device=theta.device)
    for start in range(0, p, chunk):
        stop = min(start + chunk, p)
        basis = torch.zeros(stop - start, p, dtype=theta.dtype, device=theta.device)
        basis[:, start:stop].fill_diagonal_(1.0)
        hessian[start:stop] = batched(basis)
    return 0.5 * (hessian + hessian.T)

"""The specification of a block as one pure, differentiable torch function.

Everything else (the torch backend's fast ops, the Triton and CUDA kernels) is tested against
this; torch.func transforms (Hessians, HVPs) use it directly.
"""

from __future__ import annotations

from typing import Literal, overload

import torch

from .block import BlockShape


@overload
def block_apply(
    flat: torch.Tensor, x: torch.Tensor, shape: BlockShape, *, return_features: Literal[False] = ...
) -> torch.Tensor: ...


@overload
def block_apply(
    flat: torch.Tensor, x: torch.Tensor, shape: BlockShape, *, return_features: Literal[True]
) -> tuple[torch.Tensor, torch.Tensor]: ...


def block_apply(
    flat: torch.Tensor, x: torch.Tensor, shape: BlockShape, *, return_features: bool = False
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Output ``[N, C]`` (and last hidden features ``[N, W]``) of a block at ``flat [P]``.

    ``x [N, D]`` is cast to ``flat``'s dtype, so bf16 cached features are computed in fp32.
    """
    weights, biases = shape.views(flat)
    h = x.to(flat.dtype)
    for w, b in zip(weights[:-1], biases[:-1]):
        h = torch.relu(h @ w + b)
    out = h @ weights[-1] + biases[-1]
    return (out, h) if return_features else out

"""Batching rules of the custom ops (``register_vmap``), for ``torch.func.vmap`` and the
transforms built on it (``jacrev``, ``hessian``).

A forward over a batch of inputs with shared parameters is one call on the stacked rows
(``[B, N, D]`` -> ``[B * N, D]``). Anything with batched parameters, and every gradient (one
per batch element), is one call per element, stacked.
"""

from __future__ import annotations

import torch
from torch import Tensor

from . import library


def _take(t, bdim: int | None, i: int):
    """Element ``i`` of a batched argument, or the argument itself when unbatched."""
    if bdim is None or not isinstance(t, Tensor):
        return t
    return t.select(bdim, i).contiguous()


def _per_element(op, info, in_dims, args):
    """``op`` on each batch element, results stacked along dim 0."""
    results = [op(*(_take(a, d, i) for a, d in zip(args, in_dims))) for i in range(info.batch_size)]
    first = results[0]
    if isinstance(first, Tensor):
        return torch.stack(results), 0
    stacked = type(first)(torch.stack(parts) for parts in zip(*results))
    return stacked, type(first)(0 for _ in first)


def _rows(x: Tensor, bdim: int) -> Tensor:
    """``[B, N, D]`` inputs (batch dim moved first) as one ``[B * N, D]`` call."""
    x = x.movedim(bdim, 0)
    return x.reshape(x.shape[0] * x.shape[1], *x.shape[2:]).contiguous()


def _fwd_rule(info, in_dims, x, params, *args):
    if in_dims[1] is not None or in_dims[0] is None:
        return _per_element(library.block_fwd, info, in_dims, (x, params, *args))
    out = library.block_fwd(_rows(x, in_dims[0]), params, *args)
    return out.view(info.batch_size, -1, out.shape[-1]), 0


def _features_rule(info, in_dims, x, params, *args):
    if in_dims[1] is not None or in_dims[0] is None:
        return _per_element(library.block_fwd_features, info, in_dims, (x, params, *args))
    out, features = library.block_fwd_features(_rows(x, in_dims[0]), params, *args)
    b = info.batch_size
    return (out.view(b, -1, out.shape[-1]), features.view(b, -1, features.shape[-1])), (0, 0)


def _loop_rule(op):
    def rule(info, in_dims, *args):
        return _per_element(op, info, in_dims, args)

    return rule


library.block_fwd.register_vmap(_fwd_rule)
library.block_fwd_features.register_vmap(_features_rule)
library.block_bwd.register_vmap(_loop_rule(library.block_bwd))
library.grade_step.register_vmap(_loop_rule(library.grade_step))

"""Shared inputs of the API tests: one small block, its parameters, inputs and targets, and the
op arguments each backend is checked with (fp32 products where the backend has them)."""

from __future__ import annotations

import torch

from mgdl_fast import BlockParams, BlockShape
from mgdl_fast.ops.library import dims

from ..ops.cases import DEVICE, checked_options

SHAPE = BlockShape(3, 16, 2, 2)
DIMS = dims(SHAPE)
N = 37


def data(n: int = N, seed: int = 0, shape: BlockShape = SHAPE):
    """``(params, x [n, D], y [n, C])`` on the test device."""
    gen = torch.Generator().manual_seed(seed)
    params = BlockParams.init(shape, seed=seed, device=DEVICE)
    x = torch.rand(n, shape.in_dim, generator=gen).to(DEVICE)
    y = torch.rand(n, shape.out_dim, generator=gen).to(DEVICE)
    return params, x, y


def config(name: str) -> dict:
    """Keyword arguments running an op on backend ``name`` at its checked precision."""
    return {"backend": name, "precision": checked_options(name).precision}

"""What a block is: its flat layout, the papers' initialisation and parameter counts, and the
specification (``spec.block_apply``) against the float64 NumPy oracle."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mgdl_fast import BlockParams, BlockShape
from mgdl_fast.spec import block_apply
from mgdl_fast.testing import assert_close

from . import oracle


@pytest.mark.parametrize("dims", [(1, 2, 16, 1, 1), (17, 3, 16, 2, 3), (64, 16, 16, 4, 1)])
def test_the_specification_matches_the_oracle(dims):
    n, d, w, layers, c = dims
    shape = BlockShape(d, w, layers, c)
    params = BlockParams.init(shape, seed=1, dtype=torch.float64)
    x = torch.rand(n, d, dtype=torch.float64)
    expected, _, hs = oracle.forward(params.flat.numpy(), x.numpy(), shape)
    out, feats = block_apply(params.flat, x, shape, return_features=True)
    assert_close(out, torch.from_numpy(expected))
    assert_close(feats, torch.from_numpy(hs[-1]))


def test_init_statistics_follow_truncated_glorot():
    shape = BlockShape(128, 128, 2, 1)
    params = BlockParams.init(shape, seed=0)
    w = params.weights[0].double()
    std = np.sqrt(2.0 / 256) / 0.87962566103423978
    assert abs(w.std().item() - np.sqrt(2.0 / 256)) < 0.03 * np.sqrt(2.0 / 256)
    assert w.abs().max().item() <= 2 * std + 1e-7
    assert abs(params.biases[0].std().item() - 1e-2) < 3e-3
    assert torch.equal(BlockParams.init(shape, seed=0).flat, params.flat)
    assert not torch.equal(BlockParams.init(shape, seed=1).flat, params.flat)


def test_param_counts_match_the_papers():
    assert BlockShape(2, 128, 2, 1).num_params == 17_025
    assert BlockShape(128, 128, 2, 1).num_params == 33_153
    assert BlockShape(2, 128, 8, 1).num_params == 116_097
    assert (
        BlockShape(2, 128, 3, 1).num_params + 3 * BlockShape(128, 128, 3, 1).num_params == 182_532
    )

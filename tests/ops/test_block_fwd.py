"""block forward on every backend that can serve here, against the float64 NumPy oracle: the
output and the last hidden layer (the next grade's cached features), outputs and engine buffers
poisoned with NaN before the run."""

from __future__ import annotations

import pytest
import torch

from mgdl_fast.testing import poison_buffers, poisoned

from .. import oracle
from .cases import DEVICE, assert_matches, cases, lowp_reference


def _expected(case, params, x):
    out, _, hs = oracle.forward(params.flat.double().cpu().numpy(), x.double().cpu().numpy(),
                                case.shape)  # fmt: skip
    return torch.from_numpy(out), torch.from_numpy(hs[-1])


@pytest.mark.parametrize("case", cases())
def test_output_and_features_match_the_oracle(case):
    params, x, _ = case.inputs()
    with poison_buffers():
        engine = case.bind()
    out = poisoned(case.n, case.shape.out_dim, device=DEVICE)
    feats = poisoned(case.n, case.shape.width, device=DEVICE)
    engine.forward(x, params.flat, out, feats)
    expected_out, expected_feats = _expected(case, params, x)
    lowp = lowp_reference(case.shape, params.flat, x, case.options.precision)
    assert_matches(case, out, expected_out, lowp[0], msg="out")
    assert_matches(case, feats, expected_feats, lowp[1], msg="features")


@pytest.mark.parametrize("case", cases())
def test_bf16_inputs_and_features(case):
    """Later grades read cached bf16 features and write the next grade's in bf16."""
    params, x, _ = case.inputs(seed=3, x_dtype=torch.bfloat16)
    engine = case.bind(input_dtype=torch.bfloat16)
    out = poisoned(case.n, case.shape.out_dim, device=DEVICE)
    feats = poisoned(case.n, case.shape.width, dtype=torch.bfloat16, device=DEVICE)
    engine.forward(x, params.flat, out, feats)
    expected_out, expected_feats = _expected(case, params, x)
    lowp = lowp_reference(case.shape, params.flat, x, case.options.precision)
    assert_matches(case, out, expected_out, lowp[0], msg="out")
    # Stored in bf16: compare with the oracle's features rounded the same way.
    rounded = expected_feats.to(torch.bfloat16).double()
    torch.testing.assert_close(feats.double().cpu(), rounded, rtol=1.6e-2, atol=1e-3)


@pytest.mark.parametrize("case", cases())
def test_forward_in_chunks_of_fewer_rows_than_bound(case):
    """An engine bound for R rows serves any n <= R (the trainer's chunked records)."""
    params, x, _ = case.inputs(seed=5)
    engine = case.bind(rows=case.n + 7)
    out = poisoned(case.n, case.shape.out_dim, device=DEVICE)
    engine.forward(x, params.flat, out)
    expected_out, _ = _expected(case, params, x)
    lowp = lowp_reference(case.shape, params.flat, x, case.options.precision)
    assert_matches(case, out, expected_out, lowp[0], msg="out")

"""Backward from a given dL/dout (the TV and blur losses) on every backend: every parameter
gradient and dL/dx against the float64 oracle, gradients and buffers NaN-poisoned."""

from __future__ import annotations

import pytest
import torch

from mgdl_fast.testing import poison_buffers, poisoned

from .. import oracle
from .cases import DEVICE, assert_matches, cases, lowp_reference


@pytest.mark.parametrize("case", cases())
def test_parameter_and_input_gradients_match_the_oracle(case):
    params, x, _ = case.inputs(seed=4)
    grad_out = torch.randn(case.n, case.shape.out_dim, generator=torch.Generator().manual_seed(9))
    grad_out = grad_out.to(DEVICE)
    with poison_buffers():
        engine = case.bind()
    grad = poisoned(case.shape.num_params, device=DEVICE)
    grad_x = poisoned(case.n, case.shape.in_dim, device=DEVICE)
    engine.backward(x, params.flat, grad_out, grad, grad_x)
    exp_grad, exp_grad_x = oracle.backward(
        params.flat.double().cpu().numpy(), x.double().cpu().numpy(), case.shape,
        grad_out.double().cpu().numpy(),
    )  # fmt: skip
    _, _, _, low_grad, low_grad_x = lowp_reference(
        case.shape, params.flat, x, case.options.precision, grad_out=grad_out
    )
    assert_matches(case, grad, torch.from_numpy(exp_grad), low_grad, msg="dL/dparams")
    assert_matches(case, grad_x, torch.from_numpy(exp_grad_x), low_grad_x, msg="dL/dx")


@pytest.mark.parametrize("case", cases())
def test_without_input_gradient(case):
    params, x, _ = case.inputs(seed=6)
    grad_out = torch.ones(case.n, case.shape.out_dim, device=DEVICE)
    engine = case.bind()
    grad = poisoned(case.shape.num_params, device=DEVICE)
    engine.backward(x, params.flat, grad_out, grad)
    exp_grad, _ = oracle.backward(
        params.flat.double().cpu().numpy(), x.double().cpu().numpy(), case.shape,
        grad_out.double().cpu().numpy(),
    )  # fmt: skip
    _, _, _, low_grad, _ = lowp_reference(
        case.shape, params.flat, x, case.options.precision, grad_out=grad_out
    )
    assert_matches(case, grad, torch.from_numpy(exp_grad), low_grad, msg="dL/dparams")

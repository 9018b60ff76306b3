"""``mgdl_fast.block_forward``, the differentiable op, on every backend that can serve here:
gradients against autograd through the specification, and one-line errors for bad input."""

from __future__ import annotations

import pytest
import torch

from mgdl_fast import BlockParams, BlockShape, InputError, block_forward
from mgdl_fast.spec import block_apply

from .cases import DEVICE, backend_params, checked_options

SHAPE = BlockShape(3, 16, 2, 2)


@pytest.mark.parametrize("name", backend_params())
def test_gradients_match_autograd_through_the_specification(name, monkeypatch):
    # fp32 products where the backend has them (checked_options), compared at fp32 tolerance.
    monkeypatch.setenv("MGDL_FAST_PRECISION", checked_options(name).precision)
    params = BlockParams.init(SHAPE, seed=0, device=DEVICE)
    x = torch.rand(37, 3, device=DEVICE, requires_grad=True)
    flat = params.flat.clone().requires_grad_(True)
    weights = torch.randn(37, 2, device=DEVICE)
    out = block_forward(x, BlockParams(SHAPE, flat), backend=name)
    grads = torch.autograd.grad((out * weights).sum(), (x, flat))
    x64, flat64 = x.detach().double().requires_grad_(), flat.detach().double().requires_grad_()
    expected_out = block_apply(flat64, x64, SHAPE)
    expected = torch.autograd.grad((expected_out * weights.double()).sum(), (x64, flat64))
    tol = {"rtol": 2e-2, "atol": 2e-3} if name == "cuda" else {"rtol": 1e-4, "atol": 1e-6}
    torch.testing.assert_close(out.double(), expected_out.detach(), **tol)
    for got, want in zip(grads, expected):
        torch.testing.assert_close(got.double(), want, **tol)


def test_bf16_features_are_computed_in_fp32():
    params = BlockParams.init(BlockShape(32, 16, 2, 1), seed=0)
    x16 = torch.rand(100, 32).to(torch.bfloat16)
    expected = block_apply(params.flat.double(), x16.double(), params.shape)
    torch.testing.assert_close(
        block_forward(x16, params, backend="torch").double(), expected, rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize(
    "x, message",
    [
        (torch.rand(5, 2), "x must have 3 columns"),
        (torch.rand(5), "x must be 2-D [N, 3]"),
        (torch.rand(5, 3).double(), "x dtype float64 is not float32 or bfloat16"),
        (torch.randint(0, 5, (5, 3)), "x dtype int64 is not float32 or bfloat16"),
    ],
)
def test_bad_inputs_get_one_line_errors(x, message):
    params = BlockParams.init(SHAPE, seed=0)
    with pytest.raises(InputError) as info:
        block_forward(x, params, backend="torch")
    assert message in str(info.value) and "\n" not in str(info.value)

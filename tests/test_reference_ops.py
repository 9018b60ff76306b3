"""The reference ops against the hand-written float64 NumPy oracle: outputs and every gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mgdl_fast import BlockParams, BlockShape, block_forward, reference
from mgdl_fast.testing import assert_close, poisoned

from . import oracle

SHAPES = [
    # (N, D, W, L, C): awkward N, grade-1 and later-grade inputs, 1-4 hidden layers, 1-3 channels
    (1, 2, 16, 1, 1),
    (17, 3, 16, 2, 3),
    (255, 2, 32, 3, 1),
    (1000, 48, 32, 2, 2),
    (64, 16, 16, 4, 1),
]


def make(n, d, w, layers, c, dtype, seed=0):
    shape = BlockShape(d, w, layers, c)
    params = BlockParams.init(shape, seed=seed, dtype=dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(n, d, generator=gen, dtype=dtype)
    y = torch.rand(n, c, generator=gen, dtype=dtype)
    return shape, params, x, y


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_block_fwd_matches_oracle(dims, dtype):
    shape, params, x, _ = make(*dims, dtype)
    expected, _, hs = oracle.forward(params.flat.double().numpy(), x.double().numpy(), shape)
    out = poisoned(x.shape[0], shape.out_dim, dtype=dtype)
    feats = poisoned(x.shape[0], shape.width, dtype=dtype)
    result = reference.block_fwd(x, params, out=out, features_out=feats)
    assert result is out
    assert_close(out, torch.from_numpy(expected), dtype)
    assert_close(feats, torch.from_numpy(hs[-1]), dtype)
    assert_close(reference.block_apply(params.flat, x, shape), torch.from_numpy(expected), dtype)


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_block_bwd_matches_oracle(dims, dtype):
    shape, params, x, _ = make(*dims, dtype)
    grad_out = torch.randn(x.shape[0], shape.out_dim, dtype=dtype)
    exp_grad, exp_grad_x = oracle.backward(
        params.flat.double().numpy(), x.double().numpy(), shape, grad_out.double().numpy()
    )
    grads = BlockParams(shape, poisoned(shape.num_params, dtype=dtype))
    grad_x = poisoned(*x.shape, dtype=dtype)
    reference.block_bwd(x, params, grad_out, grad_params=grads, grad_x=grad_x)
    assert_close(grads.flat, torch.from_numpy(exp_grad), dtype, msg="dL/dparams")
    assert_close(grad_x, torch.from_numpy(exp_grad_x), dtype, msg="dL/dx")


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_grade_step_matches_oracle(dims, dtype):
    shape, params, x, y = make(*dims, dtype)
    exp_loss, exp_grad = oracle.mse_loss_and_grad(
        params.flat.double().numpy(), x.double().numpy(), y.double().numpy(), shape
    )
    grads = BlockParams(shape, poisoned(shape.num_params, dtype=dtype))
    loss = reference.grade_step(x, y, params, grad_params=grads)
    assert_close(loss, torch.tensor(exp_loss), dtype, msg="loss")
    assert_close(grads.flat, torch.from_numpy(exp_grad), dtype, msg="dL/dparams")


def test_grade_step_equals_step_built_from_differentiable_ops():
    shape, params, x, y = make(300, 2, 32, 2, 1, torch.float64)
    flat = params.flat.clone().requires_grad_()
    loss = 0.5 * torch.mean((block_forward(x, BlockParams(shape, flat)) - y) ** 2)
    loss.backward()
    grads = params.zeros_like()
    fused_loss = reference.grade_step(x, y, params, grad_params=grads)
    assert_close(fused_loss, loss.detach())
    assert_close(grads.flat, flat.grad)


def test_block_forward_autograd_passes_gradcheck():
    shape, params, x, _ = make(7, 3, 8, 2, 2, torch.float64)
    x.requires_grad_()
    flat = params.flat.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda xx, ff: block_forward(xx, BlockParams(shape, ff)), (x, flat)
    )


def test_bf16_features_are_computed_in_fp32():
    shape, params, x, _ = make(100, 32, 16, 2, 1, torch.float32)
    x16 = x.to(torch.bfloat16)
    expected = reference.block_apply(params.flat.double(), x16.double(), shape)
    assert_close(reference.block_fwd(x16, params), expected, torch.float32)


def test_adam_step_matches_closed_form():
    gen = torch.Generator().manual_seed(3)
    p, m, v = (torch.randn(50, generator=gen, dtype=torch.float64) for _ in range(3))
    v = v.abs()
    g = torch.randn(50, generator=gen, dtype=torch.float64)
    lr, b1, b2, eps, step = 1e-3, 0.9, 0.999, 1e-8, 7
    m_new = b1 * m + (1 - b1) * g
    v_new = b2 * v + (1 - b2) * g * g
    expected = p - lr * (m_new / (1 - b1**step)) / (torch.sqrt(v_new / (1 - b2**step)) + eps)
    reference.adam_step(p, g, m, v, step=step, lr=lr, beta1=b1, beta2=b2, eps=eps)
    assert_close(p, expected)
    assert_close(m, m_new)
    assert_close(v, v_new)


def test_adam_matches_torch_adam_over_steps():
    flat = torch.randn(40, dtype=torch.float64)
    twin = flat.clone().requires_grad_()
    opt = torch.optim.Adam([twin], lr=1e-2)
    m, v = torch.zeros_like(flat), torch.zeros_like(flat)
    for step in range(1, 6):
        grad = torch.sin(flat * step)
        reference.adam_step(flat, grad, m, v, step=step, lr=1e-2)
        twin.grad = torch.sin(twin.detach() * step)
        opt.step()
    assert_close(flat, twin.detach())


def test_gd_step():
    p, g = torch.ones(5, dtype=torch.float64), torch.arange(5.0, dtype=torch.float64)
    reference.gd_step(p, g, lr=0.5)
    assert_close(p, 1 - 0.5 * torch.arange(5.0, dtype=torch.float64))


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

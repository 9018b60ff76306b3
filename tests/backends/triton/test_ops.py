"""The Triton ops against the float64 NumPy oracle and the reference: outputs, every gradient.

On a CPU machine these run under the Triton interpreter (conftest sets TRITON_INTERPRET=1) at
tiny fp32 sizes with ``precision="ieee"`` (the interpreter does not emulate tf32); on a GPU the
same tests run on CUDA tensors.
"""

from __future__ import annotations

import pytest
import torch

from mgdl_fast import BlockParams, BlockShape, dispatch, reference
from mgdl_fast.testing import assert_close, assert_close_to_oracle, poisoned

from . import oracle

pytestmark = pytest.mark.triton

SHAPES = [
    # (N, D, W, L, C): awkward N, grade-1 and later-grade inputs, 1-4 hidden layers, 1-4
    # channels, a width that is not a power of two (48 is padded to 64 inside the kernels).
    (1, 2, 16, 1, 1),
    (17, 3, 16, 2, 3),
    (255, 2, 32, 3, 1),
    (40, 32, 32, 2, 2),
    (33, 1, 48, 4, 4),
    (70, 16, 16, 4, 1),
]
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def triton_ops():
    why = dispatch.unavailable_reason("triton")
    if why:
        pytest.skip(why)
    from mgdl_fast import _triton

    return _triton


def make(n, d, w, layers, c, seed=0, x_dtype=torch.float32):
    shape = BlockShape(d, w, layers, c)
    params = BlockParams.init(shape, seed=seed, device=DEVICE)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(n, d, generator=gen).to(DEVICE, x_dtype)
    y = torch.rand(n, c, generator=gen).to(DEVICE)
    return shape, params, x, y


def numpy_args(params, x, *more):
    return [t.double().cpu().numpy() for t in (params.flat, x, *more)]


@pytest.mark.parametrize("dims", SHAPES)
def test_block_fwd_matches_oracle(triton_ops, dims):
    shape, params, x, _ = make(*dims)
    expected, _, hs = oracle.forward(*numpy_args(params, x), shape)
    out = poisoned(x.shape[0], shape.out_dim, device=DEVICE)
    feats = poisoned(x.shape[0], shape.width, device=DEVICE)
    result = triton_ops.block_fwd(x, params, out=out, features_out=feats, precision="ieee")
    assert result is out
    assert_close(out, torch.from_numpy(expected), torch.float32, msg="out")
    assert_close(feats, torch.from_numpy(hs[-1]), torch.float32, msg="features")


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("deterministic", [True, False])
def test_grade_step_matches_oracle(triton_ops, dims, deterministic):
    shape, params, x, y = make(*dims)
    exp_loss, exp_grad = oracle.mse_loss_and_grad(*numpy_args(params, x, y), shape)
    grads = BlockParams(shape, poisoned(shape.num_params, device=DEVICE))
    loss = triton_ops.grade_step(
        x, y, params, grad_params=grads, precision="ieee", deterministic=deterministic
    )
    assert loss.shape == () and loss.device == x.device
    assert_close(loss, torch.tensor(exp_loss), torch.float32, msg="loss")
    assert_close(grads.flat, torch.from_numpy(exp_grad), torch.float32, msg="dL/dparams")


@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("deterministic", [True, False])
def test_block_bwd_matches_oracle(triton_ops, dims, deterministic):
    shape, params, x, _ = make(*dims)
    grad_out = torch.randn(x.shape[0], shape.out_dim).to(DEVICE)
    exp_grad, exp_grad_x = oracle.backward(
        *numpy_args(params, x), shape, grad_out.double().cpu().numpy()
    )
    grads = BlockParams(shape, poisoned(shape.num_params, device=DEVICE))
    grad_x = poisoned(*x.shape, device=DEVICE)
    result = triton_ops.block_bwd(
        x, params, grad_out, grad_params=grads, grad_x=grad_x, precision="ieee",
        deterministic=deterministic,
    )  # fmt: skip
    assert result is grads
    assert_close(grads.flat, torch.from_numpy(exp_grad), torch.float32, msg="dL/dparams")
    assert_close(grad_x, torch.from_numpy(exp_grad_x), torch.float32, msg="dL/dx")


def test_block_bwd_without_grad_x_allocates_gradients(triton_ops):
    shape, params, x, _ = make(20, 2, 16, 2, 1)
    grad_out = torch.randn(20, 1).to(DEVICE)
    exp_grad, _ = oracle.backward(*numpy_args(params, x), shape, grad_out.double().cpu().numpy())
    grads = triton_ops.block_bwd(x, params, grad_out, precision="ieee")
    assert_close(grads.flat, torch.from_numpy(exp_grad), torch.float32)


def test_deterministic_reduction_is_bitwise_reproducible(triton_ops):
    shape, params, x, y = make(255, 16, 16, 2, 2)
    runs = [params.zeros_like() for _ in range(2)]
    losses = [
        triton_ops.grade_step(x, y, params, grad_params=g, precision="ieee", deterministic=True)
        for g in runs
    ]
    assert torch.equal(runs[0].flat, runs[1].flat) and torch.equal(losses[0], losses[1])


def test_bf16_features_in_and_out(triton_ops):
    """bf16 inputs and cached features; the bf16 products are emulated exactly under the
    interpreter (operands rounded to bf16, fp32 products), and are real bf16 MMAs on a GPU."""
    shape, params, x, y = make(100, 32, 32, 2, 1, x_dtype=torch.bfloat16)
    oracle_out, _, hs = oracle.forward(*numpy_args(params, x), shape)
    low = BlockParams(shape, params.flat.bfloat16())
    ref_feats = torch.empty(100, 32, dtype=torch.bfloat16, device=DEVICE)
    ref_out = reference.block_fwd(x, low, features_out=ref_feats)
    feats = poisoned(100, 32, dtype=torch.bfloat16, device=DEVICE)
    out = triton_ops.block_fwd(x, params, features_out=feats)
    assert_close_to_oracle(out, torch.from_numpy(oracle_out), ref_out, msg="out")
    assert_close_to_oracle(feats, torch.from_numpy(hs[-1]), ref_feats, msg="features")
    _, exp_grad = oracle.mse_loss_and_grad(*numpy_args(params, x, y), shape)
    ref_grads = low.zeros_like()
    reference.grade_step(x, y.bfloat16(), low, grad_params=ref_grads)
    grads = params.zeros_like()
    loss = triton_ops.grade_step(x, y, params, grad_params=grads)
    assert_close_to_oracle(grads.flat, torch.from_numpy(exp_grad), ref_grads.flat, msg="dL/dp")
    # A bf16 loss can land near the exact one by cancellation, so the loss is checked against
    # the kernel's own (already checked) outputs instead.
    own_loss = 0.5 * torch.mean((out.double() - y.double()) ** 2)
    assert_close(loss, own_loss, torch.float32, msg="loss")


@pytest.mark.parametrize("step", [1, 7])
def test_adam_step_matches_reference(triton_ops, step):
    gen = torch.Generator().manual_seed(3)
    p, m, g = (torch.randn(3000, generator=gen).to(DEVICE) for _ in range(3))
    v = torch.rand(3000, generator=gen).to(DEVICE)
    want_p, want_m, want_v = p.clone(), m.clone(), v.clone()
    kwargs = {"step": step, "lr": 1e-2, "beta1": 0.8, "beta2": 0.99, "eps": 1e-6}
    reference.adam_step(want_p, g, want_m, want_v, **kwargs)
    triton_ops.adam_step(p, g, m, v, **kwargs)
    assert_close(p, want_p, torch.float32, msg="params")
    assert_close(m, want_m, torch.float32, msg="exp_avg")
    assert_close(v, want_v, torch.float32, msg="exp_avg_sq")


def test_gd_step_matches_reference(triton_ops):
    p, g = torch.randn(1500).to(DEVICE), torch.randn(1500).to(DEVICE)
    expected = p.clone()
    reference.gd_step(expected, g, lr=0.3)
    triton_ops.gd_step(p, g, lr=0.3)
    assert_close(p, expected, torch.float32)


@pytest.mark.parametrize(("dims", "chunk"), [((37, 2, 48, 2, 2), 32), ((50, 32, 32, 3, 1), 16)])
def test_column_chunks_match_oracle(triton_ops, monkeypatch, dims, chunk):
    """Blocks wider than 128 run in column chunks; forced here at small widths, including a
    last chunk that is partly padding (48 = 32 + 16 of 32)."""
    tile = f"{16 if DEVICE == 'cpu' else 64},4,{chunk}"
    monkeypatch.setenv(triton_ops.TILE_ENV, tile)
    monkeypatch.setenv(triton_ops.FWD_TILE_ENV, tile)
    shape, params, x, y = make(*dims)
    n = x.shape[0]
    exp_out, _, hs = oracle.forward(*numpy_args(params, x), shape)
    feats = poisoned(n, shape.width, device=DEVICE)
    out = triton_ops.block_fwd(x, params, features_out=feats, precision="ieee")
    assert_close(out, torch.from_numpy(exp_out), torch.float32, msg="out")
    assert_close(feats, torch.from_numpy(hs[-1]), torch.float32, msg="features")
    exp_loss, exp_grad = oracle.mse_loss_and_grad(*numpy_args(params, x, y), shape)
    grads = BlockParams(shape, poisoned(shape.num_params, device=DEVICE))
    loss = triton_ops.grade_step(x, y, params, grad_params=grads, precision="ieee")
    assert_close(loss, torch.tensor(exp_loss), torch.float32, msg="loss")
    assert_close(grads.flat, torch.from_numpy(exp_grad), torch.float32, msg="dL/dparams")
    grad_out = torch.randn(n, shape.out_dim).to(DEVICE)
    exp_grad, exp_grad_x = oracle.backward(
        *numpy_args(params, x), shape, grad_out.double().cpu().numpy()
    )
    grad_x = poisoned(*x.shape, device=DEVICE)
    grads = triton_ops.block_bwd(x, params, grad_out, grad_x=grad_x, precision="ieee")
    assert_close(grads.flat, torch.from_numpy(exp_grad), torch.float32, msg="bwd dL/dparams")
    assert_close(grad_x, torch.from_numpy(exp_grad_x), torch.float32, msg="dL/dx")

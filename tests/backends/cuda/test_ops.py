"""The cuda backend's kernels on a GPU against the float64 NumPy oracle: outputs and every
gradient, with NaN-poisoned outputs, awkward N, every width, grade-1 and later-grade inputs.

The kernels multiply in bf16 with fp32 accumulation, so results follow the flash-attention
rule (mgdl_fast.testing.assert_close_to_oracle): error vs the fp64 oracle at most twice the
error of the reference block computed in bf16 by torch, plus a small floor.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mgdl_fast import (
    BlockParams,
    BlockShape,
    ModelConfig,
    TrainConfig,
    block_forward,
    dispatch,
    fit_regression,
    from_array,
    reference,
)
from mgdl_fast import _cuda as cuda
from mgdl_fast.testing import assert_close, assert_close_to_oracle, poisoned

from . import oracle

pytestmark = [pytest.mark.gpu, pytest.mark.cuda_ext]


@pytest.fixture(autouse=True)
def _backend_available():
    why = dispatch.unavailable_reason("cuda")
    if why:
        pytest.skip(f"cuda backend unavailable: {why}")


SHAPES = [
    # (N, D, W, L, C): awkward N, grade-1 (D <= 3) and later-grade (D == W) inputs, all widths
    (1, 2, 32, 1, 1),
    (17, 3, 64, 2, 3),
    (255, 2, 128, 2, 1),
    (1000, 128, 128, 2, 1),
    (1000, 128, 128, 3, 2),
    (4099, 2, 128, 3, 4),
    (300, 32, 32, 3, 1),
    (129, 64, 64, 1, 2),
    (200, 2, 256, 2, 1),
    (77, 256, 256, 1, 3),
]
IDS = [f"N{n}-D{d}-W{w}-L{layers}-C{c}" for n, d, w, layers, c in SHAPES]


def make(n, d, w, layers, c, x_dtype=torch.float32, seed=0):
    shape = BlockShape(d, w, layers, c)
    params = BlockParams.init(shape, seed=seed, device="cuda")
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(n, d, generator=gen).to("cuda", x_dtype)
    y = torch.rand(n, c, generator=gen).to("cuda")
    return shape, params, x, y


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def lowp_forward(params: BlockParams, x: torch.Tensor):
    """(out, features) of the reference block computed in bf16 by torch."""
    flat = params.flat.to(torch.bfloat16)
    return reference.block_apply(flat, x.to(torch.bfloat16), params.shape, return_features=True)


def lowp_grads(params: BlockParams, x: torch.Tensor, loss_fn):
    """(loss, dL/dflat, dL/dx) of the reference block in bf16 for loss_fn(out)."""
    flat = params.flat.to(torch.bfloat16).requires_grad_()
    xb = x.to(torch.bfloat16).requires_grad_()
    loss = loss_fn(reference.block_apply(flat, xb, params.shape))
    loss.backward()
    return loss.detach(), flat.grad, xb.grad


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dims", SHAPES, ids=IDS)
def test_block_fwd_matches_oracle(dims, x_dtype):
    shape, params, x, _ = make(*dims, x_dtype=x_dtype)
    expected, _, hs = oracle.forward(np64(params.flat), np64(x), shape)
    ref_out, ref_feats = lowp_forward(params, x)
    out = poisoned(x.shape[0], shape.out_dim, device="cuda")
    feats = poisoned(x.shape[0], shape.width, device="cuda")
    assert cuda.block_fwd(x, params, out=out, features_out=feats) is out
    assert_close_to_oracle(out, torch.from_numpy(expected), ref_out, msg="out")
    assert_close_to_oracle(feats, torch.from_numpy(hs[-1]), ref_feats, msg="features")


def test_block_fwd_writes_bf16_features_and_allocates_out():
    shape, params, x, _ = make(513, 128, 128, 2, 1, x_dtype=torch.bfloat16)
    expected, _, hs = oracle.forward(np64(params.flat), np64(x), shape)
    ref_out, ref_feats = lowp_forward(params, x)
    feats = poisoned(x.shape[0], shape.width, dtype=torch.bfloat16, device="cuda")
    out = cuda.block_fwd(x, params, features_out=feats)
    assert out.shape == (513, 1) and out.dtype == torch.float32
    assert_close_to_oracle(out, torch.from_numpy(expected), ref_out, msg="out")
    # Rounding the fp32 features to bf16 adds at most half a bf16 ulp to the reference's error.
    assert_close_to_oracle(feats, torch.from_numpy(hs[-1]), ref_feats, msg="bf16 features")


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dims", SHAPES, ids=IDS)
def test_block_bwd_matches_oracle(dims, x_dtype):
    shape, params, x, _ = make(*dims, x_dtype=x_dtype)
    grad_out = torch.randn(x.shape[0], shape.out_dim, device="cuda")
    exp_grad, exp_grad_x = oracle.backward(np64(params.flat), np64(x), shape, np64(grad_out))
    _, ref_grad, ref_grad_x = lowp_grads(params, x, lambda out: (out * grad_out).sum())
    grads = BlockParams(shape, poisoned(shape.num_params, device="cuda"))
    grad_x = poisoned(*x.shape, device="cuda")
    cuda.block_bwd(x, params, grad_out, grad_params=grads, grad_x=grad_x)
    assert_close_to_oracle(grads.flat, torch.from_numpy(exp_grad), ref_grad, msg="dL/dparams")
    assert_close_to_oracle(grad_x, torch.from_numpy(exp_grad_x), ref_grad_x, msg="dL/dx")


@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("dims", SHAPES, ids=IDS)
def test_grade_step_matches_oracle(dims, x_dtype):
    shape, params, x, y = make(*dims, x_dtype=x_dtype)
    exp_loss, exp_grad = oracle.mse_loss_and_grad(np64(params.flat), np64(x), np64(y), shape)
    ref_loss, ref_grad, _ = lowp_grads(params, x, lambda out: 0.5 * torch.mean((out - y) ** 2))
    grads = BlockParams(shape, poisoned(shape.num_params, device="cuda"))
    loss = cuda.grade_step(x, y, params, grad_params=grads)
    assert loss.shape == () and loss.device.type == "cuda"
    assert_close_to_oracle(loss, torch.tensor(exp_loss), ref_loss, msg="loss")
    assert_close_to_oracle(grads.flat, torch.from_numpy(exp_grad), ref_grad, msg="dL/dparams")


def test_grade_step_is_deterministic():
    _, params, x, y = make(20_000, 128, 128, 2, 1, x_dtype=torch.bfloat16)
    first, second = params.zeros_like(), params.zeros_like()
    loss1 = cuda.grade_step(x, y, params, grad_params=first)
    loss2 = cuda.grade_step(x, y, params, grad_params=second)
    assert torch.equal(first.flat, second.flat) and torch.equal(loss1, loss2)


def test_bf16_grad_x_for_cached_features():
    shape, params, x, _ = make(300, 64, 64, 2, 1, x_dtype=torch.bfloat16)
    grad_out = torch.randn(300, 1, device="cuda")
    _, exp_grad_x = oracle.backward(np64(params.flat), np64(x), shape, np64(grad_out))
    _, _, ref_grad_x = lowp_grads(params, x, lambda out: (out * grad_out).sum())
    grad_x = poisoned(300, 64, dtype=torch.bfloat16, device="cuda")
    cuda.block_bwd(x, params, grad_out, grad_x=grad_x)
    assert_close_to_oracle(grad_x, torch.from_numpy(exp_grad_x), ref_grad_x, msg="bf16 dL/dx")


def test_differentiable_block_forward_runs_on_cuda():
    shape, params, x, _ = make(500, 2, 128, 2, 1)
    x.requires_grad_()
    flat = params.flat.clone().requires_grad_()
    out = block_forward(x, BlockParams(shape, flat), backend="cuda")
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    exp_grad, exp_grad_x = oracle.backward(np64(params.flat), np64(x), shape, np64(grad_out))
    _, ref_grad, ref_grad_x = lowp_grads(params, x.detach(), lambda o: (o * grad_out).sum())
    assert_close_to_oracle(flat.grad, torch.from_numpy(exp_grad), ref_grad, msg="dL/dparams")
    assert_close_to_oracle(x.grad, torch.from_numpy(exp_grad_x), ref_grad_x, msg="dL/dx")


def test_adam_and_gd_match_the_reference():
    gen = torch.Generator().manual_seed(5)
    p, g, m, v = (torch.randn(33_153, generator=gen) for _ in range(4))
    v = v.abs()
    twins = [t.clone() for t in (p, m, v)]
    ours = [t.to("cuda") for t in (p, m, v)]
    for step in (1, 2, 50):
        reference.adam_step(*twins[:1], g, *twins[1:], step=step, lr=1e-3)
        cuda.adam_step(ours[0], g.to("cuda"), ours[1], ours[2], step=step, lr=1e-3)
    for mine, theirs in zip(ours, twins):
        assert_close(mine.cpu(), theirs, torch.float32)
    reference.gd_step(twins[0], g, lr=0.1)
    cuda.gd_step(ours[0], g.to("cuda"), lr=0.1)
    assert_close(ours[0].cpu(), twins[0], torch.float32)


def test_trainer_epochs_match_the_reference_backend():
    rng = np.random.default_rng(0)
    image = from_array(rng.random((48, 40)).astype(np.float32))
    model = ModelConfig(grades=2, width=64, layers=2)
    finals = {}
    for backend in ("reference", "cuda"):
        train = TrainConfig(
            epochs=40,
            device="cuda",
            backend=backend,
            early_stopping=False,
            record_every=10,
            test_every=10,
        )
        result = fit_regression(image, model, train, progress=False)
        assert result.backends["grade_step"] == backend and result.diverged is None
        finals[backend] = result.records[-1].final["train_loss"]
    # bf16 products change the trajectory slightly; 40 Adam epochs stay within a few percent.
    assert finals["cuda"] == pytest.approx(finals["reference"], rel=0.05)

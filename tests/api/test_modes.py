"""Whatever mode made an engine (inference mode, no_grad, autocast), later calls at the same N
in any other mode work and give the numbers of engines that never saw those modes."""

from __future__ import annotations

import torch

import mgdl_fast as mf
from mgdl_fast import ops
from mgdl_fast.ops import library

from .test_tracing_state import _tensors

SHAPE = mf.BlockShape(2, 32, 2, 1)
N = 500


def _data():
    gen = torch.Generator().manual_seed(3)
    return torch.rand(N, 2, generator=gen), torch.rand(N, 1, generator=gen)


def _train(steps: int = 5) -> list[torch.Tensor]:
    """Normal training at N: autograd through block_forward into torch.optim.Adam, then fused
    steps with the engines' Adam; every loss and the final parameters."""
    x, y = _data()
    flat = mf.BlockParams.init(SHAPE, seed=0).flat.requires_grad_()
    optimizer = torch.optim.Adam([flat], lr=1e-2)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = 0.5 * (mf.block_forward(x, mf.BlockParams(SHAPE, flat)) - y).square().mean()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    params = mf.BlockParams(SHAPE, flat.detach().clone())
    m, v = torch.zeros_like(params.flat), torch.zeros_like(params.flat)
    step = torch.zeros((), dtype=torch.float64)
    for _ in range(steps):
        loss, grad = mf.grade_step(x, y, params)
        mf.adam_step(params, grad, m, v, step, lr=1e-2)
        losses.append(loss)
    return [*losses, params.flat, m, v]


def _other_modes() -> None:
    """Every op called first under inference mode, no_grad and autocast."""
    x, y = _data()
    params = mf.BlockParams.init(SHAPE, seed=1)
    with torch.inference_mode():
        mf.block_forward(x, params)
        mf.block_forward(x, params, return_features=True)
        mf.block_backward(x, params, torch.ones(N, 1), input_grad=True)
        loss, grad = mf.grade_step(x, y, params)
        moments = torch.zeros_like(params.flat), torch.zeros_like(params.flat)
        mf.adam_step(params.clone(), grad, *moments, torch.zeros((), dtype=torch.float64), lr=0.1)
        mf.gd_step(params.clone(), grad, lr=0.1)
    with torch.no_grad():
        mf.block_forward(x, params)
    flat = params.flat.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = mf.block_forward(x, mf.BlockParams(SHAPE, flat))
        out.sum().backward()
    assert out.dtype == torch.float32


def test_engines_made_in_any_mode_serve_normal_training():
    ops.clear_engines()
    want = _train()
    ops.clear_engines()
    _other_modes()
    for engine in ops.cached_engines():
        for t in _tensors(engine):
            assert not t.is_inference(), engine
    # The optimizer states' own tensors (the moments and step are the caller's, swapped in).
    for states in library._states.values():
        for state in states.values():
            own = ("step_size", "bias_correction2", "_power", "_one", "beta2_f32", "scratch")
            assert not any(getattr(state, name).is_inference() for name in own)
    got = _train()
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


def test_autocast_leaves_the_ops_numbers_alone():
    x, _ = _data()
    flat = mf.BlockParams.init(SHAPE, seed=2).flat.requires_grad_()
    out = mf.block_forward(x, mf.BlockParams(SHAPE, flat))
    (grad,) = torch.autograd.grad(out.sum(), flat)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out_ac = mf.block_forward(x, mf.BlockParams(SHAPE, flat))
        (grad_ac,) = torch.autograd.grad(out_ac.sum(), flat)
    assert torch.equal(out_ac, out) and torch.equal(grad_ac, grad)

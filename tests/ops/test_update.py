"""Optimizer updates on every backend: Adam against its closed form and torch.optim.Adam, GD,
the step counter and bias corrections kept on the device, and state round trips."""

from __future__ import annotations

import pytest
import torch

from mgdl_fast import BlockShape, Options, bind
from mgdl_fast.testing import assert_close

from .cases import DEVICE, backend_params

SHAPE = BlockShape(2, 16, 1, 1)  # P = 65: any shape binds an engine; updates are elementwise


def _engine(name: str):
    return bind(SHAPE, device=DEVICE, rows=8, options=Options(), backend=name)


def _vectors(n: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=gen).to(DEVICE) for _ in range(2)]


@pytest.mark.parametrize("name", backend_params())
def test_adam_matches_the_closed_form_over_steps(name):
    engine = _engine(name)
    params, _ = _vectors(300, 0)
    state = engine.optimizer_state("adam", 1e-2, params.numel())
    p, m, v = params.double().cpu(), torch.zeros(300, dtype=torch.float64), None
    v = torch.zeros_like(m)
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 1e-2
    for step in range(1, 8):
        grad = torch.sin(torch.arange(300.0) * step).to(DEVICE)
        engine.update(params, grad, state)
        g = grad.double().cpu()
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        p = p - lr * (m / (1 - b1**step)) / (torch.sqrt(v / (1 - b2**step)) + eps)
    assert state.step.item() == 7 and state.step.device == DEVICE
    assert_close(params, p, torch.float32)
    assert_close(state.exp_avg, m, torch.float32)
    assert_close(state.exp_avg_sq, v, torch.float32)


@pytest.mark.parametrize("name", backend_params())
def test_adam_matches_torch_adam(name):
    engine = _engine(name)
    params, _ = _vectors(40, 1)
    twin = params.detach().clone().cpu().requires_grad_()
    opt = torch.optim.Adam([twin], lr=1e-2)
    state = engine.optimizer_state("adam", 1e-2, params.numel())
    for step in range(1, 6):
        engine.update(params, torch.sin(params * step), state)
        twin.grad = torch.sin(twin.detach() * step)
        opt.step()
    assert_close(params, twin.detach(), torch.float32)


@pytest.mark.parametrize("name", backend_params())
def test_gd(name):
    engine = _engine(name)
    params, grad = _vectors(70, 2)
    expected = params.double() - 0.5 * grad.double()
    state = engine.optimizer_state("gd", 0.5, params.numel())
    engine.update(params, grad, state)
    assert_close(params, expected, torch.float32)
    assert state.step.item() == 1


@pytest.mark.parametrize("name", backend_params())
def test_state_round_trip_continues_identically(name):
    """A state restored from its state_dict (a checkpoint) continues bit for bit."""
    engine = _engine(name)
    a, grad = _vectors(50, 3)
    b = a.clone()
    state_a = engine.optimizer_state("adam", 1e-3, 50)
    for _ in range(3):
        engine.update(a, grad, state_a)
    state_b = engine.optimizer_state("adam", 1e-3, 50)
    state_b.load_state_dict({k: v.clone() for k, v in state_a.state_dict().items()})
    b.copy_(a)
    engine.update(a, grad, state_a)
    engine.update(b, grad, state_b)
    assert torch.equal(a, b)

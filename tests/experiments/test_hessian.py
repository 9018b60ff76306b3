"""The grade-loss Hessian: torch.func's dense Hessian against autograd and finite differences,
and the loss it differentiates against the one the engine trains."""

from __future__ import annotations

import pytest
import torch

from mgdl_fast.backends import bind
from mgdl_fast.block import BlockParams, BlockShape
from mgdl_fast.errors import InputError
from mgdl_fast.experiments.analysis.hessian import dense_hessian, grade_loss, hvp_fn

# Tiny blocks: grade 1 (coordinates in), a later grade (non-negative features in), an SGDL-like
# deep block, and two output channels.
SHAPES = [
    BlockShape(2, 4, 1, 1),
    BlockShape(5, 3, 1, 1),
    BlockShape(1, 3, 4, 1),
    BlockShape(2, 3, 2, 2),
]


def _problem(shape: BlockShape, n: int = 9, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    theta = BlockParams.init(shape, seed, dtype=torch.float64, scheme="he").flat
    # Biases away from zero so no ReLU sits on its kink (where H is not defined).
    theta += 0.1 * torch.randn(theta.shape, generator=gen, dtype=torch.float64)
    x = torch.rand(n, shape.in_dim, generator=gen, dtype=torch.float64)
    y = torch.randn(n, shape.out_dim, generator=gen, dtype=torch.float64)
    return theta, x, y


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_dense_hessian_matches_autograd_functional_hessian(shape):
    theta, x, y = _problem(shape)
    expected = torch.autograd.functional.hessian(grade_loss(shape, x, y), theta)
    got = dense_hessian(shape, theta, x, y)
    assert got.shape == (shape.num_params, shape.num_params)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-13)
    assert expected.abs().max() > 1e-2


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_dense_hessian_matches_finite_differences_of_the_gradient(shape):
    theta, x, y = _problem(shape, seed=1)
    loss = grade_loss(shape, x, y)

    def gradient(t):
        t = t.clone().requires_grad_(True)
        return torch.autograd.grad(loss(t), t)[0]

    h = 1e-6
    eye = torch.eye(shape.num_params, dtype=torch.float64)
    # Central differences of the autograd gradient, one column per parameter.
    fd = torch.stack([(gradient(theta + h * e) - gradient(theta - h * e)) / (2 * h) for e in eye])
    got = dense_hessian(shape, theta, x, y)
    torch.testing.assert_close(got, 0.5 * (fd + fd.T), rtol=1e-6, atol=1e-7)


def test_chunking_and_hvp_agree_with_the_whole_hessian():
    shape = BlockShape(3, 5, 2, 1)
    theta, x, y = _problem(shape, n=20)
    whole = dense_hessian(shape, theta, x, y)
    torch.testing.assert_close(dense_hessian(shape, theta, x, y, chunk=7), whole)
    v = torch.randn(shape.num_params, dtype=torch.float64)
    torch.testing.assert_close(hvp_fn(grade_loss(shape, x, y))(theta, v), whole @ v)


def test_the_loss_is_the_one_the_engine_trains():
    """grad of grade_loss equals the reference training step's gradient at the same point, with
    fp32 cached-feature inputs and residual targets as the trainer passes them."""
    shape = BlockShape(16, 16, 2, 1)
    params = BlockParams.init(shape, 3)
    x = torch.relu(torch.randn(300, 16))
    y = torch.randn(300, 1)
    engine_grad = params.zeros_like()
    engine = bind(shape, device="cpu", rows=300, backend="torch")
    engine_loss = engine.step(x, y, params.flat, engine_grad.flat)
    theta = params.flat.double().requires_grad_(True)
    loss = grade_loss(shape, x, y)(theta)
    (ours,) = torch.autograd.grad(loss, theta)
    torch.testing.assert_close(loss.float(), engine_loss, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours.float(), engine_grad.flat, rtol=1e-4, atol=1e-6)


def test_he_init_scheme():
    shape = BlockShape(64, 256, 2, 1)
    params = BlockParams.init(shape, 0, scheme="he")
    for (fan_in, _), w, b in zip(shape.layer_dims, params.weights, params.biases):
        assert torch.all(b == 0)
        assert abs(w.std().item() / (2.0 / fan_in) ** 0.5 - 1) < 0.05
    glorot = BlockParams.init(shape, 0)
    assert torch.equal(glorot.flat, BlockParams.init(shape, 0, scheme="glorot").flat)
    assert not torch.all(glorot.biases[0] == 0)
    with pytest.raises(InputError, match="init scheme"):
        BlockParams.init(shape, 0, scheme="xavier")

"""The fused 0.5 * MSE training step on every backend: loss and every parameter gradient
against the float64 oracle, with NaN-poisoned gradients and engine buffers, in both reduction
modes."""

from __future__ import annotations

import pytest
import torch

from mgdl_fast import Options
from mgdl_fast.testing import poison_buffers, poisoned

from .. import oracle
from .cases import DEVICE, Case, assert_matches, cases, lowp_reference


def _lowp_step(case, params, x, y):
    _, _, loss, grad, _ = lowp_reference(case.shape, params.flat, x, case.options.precision, y=y)
    return loss, grad


@pytest.mark.parametrize("deterministic", [True, False], ids=["ordered", "atomic"])
@pytest.mark.parametrize("case", cases())
def test_loss_and_gradient_match_the_oracle(case, deterministic):
    case = Case(case.backend, case.n, case.shape, Options(case.options.precision, deterministic))
    params, x, y = case.inputs()
    with poison_buffers():
        engine = case.bind()
    grad = poisoned(case.shape.num_params, device=DEVICE)
    loss = engine.step(x, y, params.flat, grad)
    assert loss.shape == () and loss.device == DEVICE and loss.dtype == torch.float32
    exp_loss, exp_grad = oracle.mse_loss_and_grad(
        params.flat.double().cpu().numpy(), x.double().cpu().numpy(),
        y.double().cpu().numpy(), case.shape,
    )  # fmt: skip
    low_loss, low_grad = _lowp_step(case, params, x, y)
    assert_matches(case, loss, torch.tensor(exp_loss), low_loss, msg="loss")
    assert_matches(case, grad, torch.from_numpy(exp_grad), low_grad, msg="dL/dparams")


@pytest.mark.parametrize("case", cases())
def test_repeated_steps_reuse_the_buffers_and_agree(case):
    """The second step with the same tensors gives the same loss and gradient (nothing left
    over from the first in the engine's buffers)."""
    params, x, y = case.inputs(seed=2)
    engine = case.bind()
    grads = [torch.empty_like(params.flat) for _ in range(2)]
    losses = [engine.step(x, y, params.flat, g).clone() for g in grads]
    torch.testing.assert_close(losses[0], losses[1], rtol=1e-6, atol=0)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-5, atol=1e-8)

"""The Triton engine's persistent kernels at the GPU's own tile configs on 132 programs, against
the float64 oracle: outputs, features, loss and every gradient, in both reduction modes, with
NaN-poisoned outputs and engine buffers (partial rows, scratch).

Cases cover N = 1 (one program with a tile, 131 without), 17 and 8453 (several tiles per
program), widths 16, 48 (padded to 64), 144 (three 64-wide chunks, the last part padding) and
256 (streamed weights), 1-4 hidden layers, 1-3 outputs, and every on-chip arrangement the tile
configs choose (resident or streamed weights, weight gradients kept in registers or summed by
kernels/weight_grad.py). fp32 products are compared at fp32 tolerance; bf16 and tf32 by the
flash-attention rule (see common.py). On a GPU the same tests run on CUDA tensors.
"""

from __future__ import annotations

import pytest
import torch

from mgdl_fast.testing import assert_close, assert_close_to_oracle, poison_buffers, poisoned

from ... import oracle
from .common import DEVICE, engine, inputs, lowp, numpy

pytestmark = pytest.mark.triton

# (N, D, W, L, C)
FP32_CASES = [
    (1, 2, 16, 1, 1),
    (17, 3, 48, 4, 3),
    (17, 144, 144, 2, 1),
    (17, 256, 256, 2, 3),
    (40, 32, 32, 3, 2),
]
# (N, D, W, L, C, input dtype, precision): the headline shapes' configs.
LOWP_CASES = [
    (300, 128, 128, 2, 1, torch.bfloat16, "bf16"),
    (300, 2, 128, 3, 1, torch.float32, "bf16"),
    (300, 128, 128, 3, 1, torch.bfloat16, "bf16"),
    (300, 2, 128, 2, 1, torch.float32, "tf32"),
]


def case_id(case):
    n, d, w, layers, c = case[:5]
    return f"N{n}-D{d}-W{w}-L{layers}-C{c}" + (f"-{case[6]}" if len(case) > 5 else "")


def run_ops(n, d, w, layers, c, precision, deterministic, x_dtype=torch.float32):
    """Forward (with features), step and backward (with dL/dx) on poisoned outputs and
    engine buffers: ``(inputs, results)``."""
    shape, params, x, y = inputs(n, d, w, layers, c, x_dtype=x_dtype)
    with poison_buffers():
        eng = engine(shape, n, precision, deterministic, x_dtype)
    out, feats = poisoned(n, c, device=DEVICE), poisoned(n, w, device=DEVICE)
    eng.forward(x, params.flat, out, feats)
    grad = poisoned(shape.num_params, device=DEVICE)
    loss = eng.step(x, y, params.flat, grad).clone()
    grad_out = torch.randn(n, c, generator=torch.Generator().manual_seed(5)).to(DEVICE)
    bgrad, gx = poisoned(shape.num_params, device=DEVICE), poisoned(n, d, device=DEVICE)
    eng.backward(x, params.flat, grad_out, bgrad, gx)
    return (shape, params, x, y, grad_out), (out, feats, loss, grad, bgrad, gx)


@pytest.mark.parametrize("deterministic", [True, False], ids=["ordered", "atomic"])
@pytest.mark.parametrize("case", FP32_CASES, ids=case_id)
def test_fp32_ops_match_the_oracle(case, deterministic):
    (shape, params, x, y, go), got = run_ops(*case, "fp32", deterministic)
    flat, xx, yy, gg = numpy(params.flat, x, y, go)
    exp_out, _, hs = oracle.forward(flat, xx, shape)
    exp_loss, exp_grad = oracle.mse_loss_and_grad(flat, xx, yy, shape)
    exp_bgrad, exp_gx = oracle.backward(flat, xx, shape, gg)
    expected = (exp_out, hs[-1], exp_loss, exp_grad, exp_bgrad, exp_gx)
    for name, actual, want in zip(("out", "features", "loss", "dL/dp", "bwd dL/dp", "dL/dx"),
                                  got, expected):  # fmt: skip
        assert_close(actual, torch.as_tensor(want), torch.float32, msg=name)


@pytest.mark.parametrize("case", LOWP_CASES, ids=case_id)
def test_reduced_precision_ops_follow_the_flash_attention_rule(case):
    *dims, x_dtype, precision = case
    (shape, params, x, y, go), got = run_ops(*dims, precision, True, x_dtype)
    flat, xx, yy, gg = numpy(params.flat, x, y, go)
    exp_out, _, hs = oracle.forward(flat, xx, shape)
    exp_loss, exp_grad = oracle.mse_loss_and_grad(flat, xx, yy, shape)
    exp_bgrad, exp_gx = oracle.backward(flat, xx, shape, gg)
    out, feats, grad, _ = lowp(flat, xx, shape, y=yy, precision=precision)
    _, _, bgrad, gx = lowp(flat, xx, shape, grad_out=gg, precision=precision)
    checks = [("out", got[0], exp_out, out), ("features", got[1], hs[-1], feats),
              ("dL/dp", got[3], exp_grad, grad), ("bwd dL/dp", got[4], exp_bgrad, bgrad),
              ("dL/dx", got[5], exp_gx, gx)]  # fmt: skip
    for name, actual, want, low in checks:
        assert_close_to_oracle(actual, torch.as_tensor(want), torch.as_tensor(low), msg=name)
    # The loss can land near the exact one by cancellation: checked against the kernel's own
    # (already checked) outputs instead.
    own = 0.5 * torch.mean((got[0].double() - y.double()) ** 2)
    assert_close(got[2], own, torch.float32, msg="loss")


@pytest.mark.parametrize(
    ("case", "deterministic"),
    [((8453, 2, 48, 2, 1), True), ((8453, 16, 16, 1, 3), False)],
    ids=["N8453-D2-W48-ordered", "N8453-D16-W16-atomic"],
)
def test_many_tiles_per_program_match_the_oracle(case, deterministic):
    """8453 rows: every one of the 132 programs takes one or more tiles, the last partly."""
    (shape, params, x, y, _), got = run_ops(*case, "fp32", deterministic)
    flat, xx, yy = numpy(params.flat, x, y)
    exp_loss, exp_grad = oracle.mse_loss_and_grad(flat, xx, yy, shape)
    exp_out, _, hs = oracle.forward(flat, xx, shape)
    assert_close(got[0], torch.from_numpy(exp_out), torch.float32, msg="out")
    assert_close(got[1], torch.from_numpy(hs[-1]), torch.float32, msg="features")
    assert_close(got[2], torch.tensor(exp_loss), torch.float32, msg="loss")
    assert_close(got[3], torch.from_numpy(exp_grad), torch.float32, msg="dL/dp")


def test_ordered_reduction_is_bitwise_reproducible():
    shape, params, x, y = inputs(300, 128, 128, 2, 1, x_dtype=torch.bfloat16)
    eng = engine(shape, 300, "bf16", True, torch.bfloat16)
    grads = [torch.empty_like(params.flat) for _ in range(2)]
    losses = [eng.step(x, y, params.flat, g).clone() for g in grads]
    assert torch.equal(grads[0], grads[1]) and torch.equal(losses[0], losses[1])

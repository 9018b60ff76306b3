"""The Triton backend on a GPU: ``pytest -m gpu`` runs everything here (skipped without CUDA).

Real sizes at the kernel report's headline and GPU-test shapes (bench/kernel_report_triton.py:
their sm_90 compiles are checked on CPU), against a float64 oracle by the
flash-attention rule with the tests' reduced-precision reference (common.py: operands rounded
as the kernels round them, T7); the interpreter cases of test_ops.py on CUDA tensors; both
reductions; the optimizer; a few training epochs against the torch backend. Not yet run on a
GPU: the first GPU session should run ``pytest -m gpu tests/backends/triton`` and record it.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mgdl_fast
from bench.kernel_report_triton import GPU_TESTS, HEADLINE
from mgdl_fast import ModelConfig, TrainConfig, from_array
from mgdl_fast.testing import assert_close, assert_close_to_oracle, poison_buffers, poisoned

from ... import oracle
from . import test_ops
from .common import engine, inputs, lowp, numpy

pytestmark = [pytest.mark.gpu, pytest.mark.triton]
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# Rows per variant: several tiles per program on 132 SMs, a ragged last tile.
ROWS = 100_003
VARIANTS = {**HEADLINE, **GPU_TESTS}


# The GPU tests' own variants compile for about 20 s each (the kernel report): not in the suite.
NAMES = [*HEADLINE, *(pytest.param(n, marks=pytest.mark.compile_heavy) for n in GPU_TESTS)]


@pytest.mark.parametrize("name", NAMES)
def test_variant_at_real_size_follows_the_flash_attention_rule(name):
    d, w, layers, c, x_name, precision = VARIANTS[name]
    n = ROWS if w <= 128 else 20_000
    shape, params, x, y = inputs(n, d, w, layers, c, x_dtype=DTYPES[x_name])
    with poison_buffers():
        eng = engine(shape, n, precision, True, DTYPES[x_name])
    out, feats = poisoned(n, c, device="cuda"), poisoned(n, w, device="cuda")
    eng.forward(x, params.flat, out, feats)
    grad = poisoned(shape.num_params, device="cuda")
    eng.step(x, y, params.flat, grad)
    grad_out = torch.randn(n, c, device="cuda") / n
    bgrad = poisoned(shape.num_params, device="cuda")
    eng.backward(x, params.flat, grad_out, bgrad)
    flat, xx, yy, gg = numpy(params.flat, x, y, grad_out)
    exp_out, _, hs = oracle.forward(flat, xx, shape)
    _, exp_grad = oracle.mse_loss_and_grad(flat, xx, yy, shape)
    exp_bgrad, _ = oracle.backward(flat, xx, shape, gg)
    low_out, low_feats, low_grad, _ = lowp(flat, xx, shape, y=yy, precision=precision)
    _, _, low_bgrad, _ = lowp(flat, xx, shape, grad_out=gg, precision=precision)
    for label, actual, want, ref in [("out", out, exp_out, low_out),
                                     ("features", feats, hs[-1], low_feats),
                                     ("dL/dp", grad, exp_grad, low_grad),
                                     ("bwd dL/dp", bgrad, exp_bgrad, low_bgrad)]:  # fmt: skip
        if precision == "fp32":
            assert_close(actual, torch.as_tensor(want), torch.float32, msg=label)
        else:
            assert_close_to_oracle(actual, torch.as_tensor(want), torch.as_tensor(ref), msg=label)


@pytest.mark.compile_heavy
@pytest.mark.parametrize("deterministic", [True, False], ids=["ordered", "atomic"])
@pytest.mark.parametrize("case", test_ops.FP32_CASES, ids=test_ops.case_id)
def test_interpreter_cases_on_the_gpu(case, deterministic):
    test_ops.test_fp32_ops_match_the_oracle(case, deterministic)


@pytest.mark.compile_heavy
@pytest.mark.parametrize("case", test_ops.LOWP_CASES, ids=test_ops.case_id)
def test_reduced_precision_cases_on_the_gpu(case):
    test_ops.test_reduced_precision_ops_follow_the_flash_attention_rule(case)


def test_reductions_agree_and_the_ordered_one_is_reproducible():
    n = 512 * 512
    shape, params, x, y = inputs(n, 128, 128, 2, 1, x_dtype=torch.bfloat16)
    ordered = engine(shape, n, "bf16", True, torch.bfloat16)
    atomic = engine(shape, n, "bf16", False, torch.bfloat16)
    runs = [torch.empty_like(params.flat) for _ in range(3)]
    losses = [ordered.step(x, y, params.flat, runs[i]).clone() for i in range(2)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(losses[0], losses[1])
    atomic.step(x, y, params.flat, runs[2])
    scale = runs[0].abs().max().item()
    assert (runs[2] - runs[0]).abs().max().item() <= 1e-5 * scale


def test_training_epochs_follow_the_torch_backend():
    """Two grades of 40 epochs on a 256 x 256 image with bf16 cached features (grade 2 runs
    bf16 products, T1): the test PSNR tracks the torch backend's. The tolerance allows for
    bf16 rounding drifting through Adam; it has not been calibrated on a GPU yet."""
    rows, cols = np.mgrid[0:256, 0:256] / 256
    image = from_array(0.5 + 0.4 * np.sin(20 * cols) * np.cos(14 * rows))
    model = ModelConfig(grades=2, width=128, layers=2)
    psnr = {}
    for backend in ("torch", "triton"):
        train = TrainConfig(epochs=40, device="cuda", backend=backend, early_stopping=False,
                            cache_dtype="bf16")  # fmt: skip
        result = mgdl_fast.fit_regression(image, model, train, progress=False)
        assert result.diverged is None and set(result.backends.values()) == {backend}
        psnr[backend] = [rec.final["test_psnr"] for rec in result.records]
    assert np.allclose(psnr["triton"], psnr["torch"], atol=0.3), psnr

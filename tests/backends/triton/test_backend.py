"""The Triton backend inside the registry and the trainer: its reasons, which backend auto picks,
how precisions resolve, the tile override, and training runs against the torch backend
(fp32 features at fp32 tolerance; bf16 features by the flash-attention rule, T1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mgdl_fast
from mgdl_fast import (
    BackendUnavailableError,
    BlockShape,
    ModelConfig,
    Options,
    TrainConfig,
    backends,
    from_array,
)
from mgdl_fast.backends.triton import TritonBackend
from mgdl_fast.backends.triton.engine import TILE_ENV
from mgdl_fast.testing import assert_close, assert_close_to_oracle

from ... import oracle
from .common import DEVICE, lowp, numpy

pytestmark = pytest.mark.triton


@pytest.fixture(autouse=True)
def _available():
    why = backends.unavailable_reason("triton")
    if why:
        pytest.skip(why)


@pytest.mark.parametrize(
    ("dims", "reason"),
    [
        ((2, 24, 2, 1), "width 24 is not one of multiples of 16"),
        ((2, 272, 2, 1), "width 272 is not one of"),
        ((2, 16, 5, 1), "5 hidden layers"),
        ((2, 16, 2, 5), "5 output channels"),
        ((4, 16, 2, 1), "input dim 4 is neither 1-3 nor the width 16"),
    ],
)
def test_unsupported_shapes_give_reasons(dims, reason):
    shape = BlockShape(*dims)
    assert any(reason in r for r in backends.reasons("triton", shape, DEVICE))
    with pytest.raises(BackendUnavailableError, match=reason):
        backends.bind(shape, device=DEVICE, rows=4, backend="triton")


def test_no_gpu_and_no_interpreter_is_unavailable(monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    backend = TritonBackend()
    assert "no CUDA device" in backend.unavailable_reason()
    why = backend.not_supported_reasons(BlockShape(2, 16, 1, 1), DEVICE, torch.float32, Options())
    assert any("only under the Triton interpreter" in r for r in why)


def test_auto_picks_triton_only_for_cuda(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    monkeypatch.setenv("MGDL_FAST_SKIP_SELF_CHECK", "1")
    shape = BlockShape(2, 16, 2, 1)
    chosen = backends.bind(shape, device=DEVICE, rows=8).backend
    if DEVICE.type == "cpu":
        assert chosen == "torch"
    else:
        assert chosen in ("cuda", "triton")
    assert backends.bind(shape, device=DEVICE, rows=8, backend="triton").backend == "triton"


@pytest.mark.parametrize(
    ("x_dtype", "requested", "resolved"),
    [(torch.float32, "auto", "tf32" if DEVICE.type == "cuda" else "fp32"),
     (torch.bfloat16, "auto", "bf16"), (torch.float32, "tf32", "tf32")],
)  # fmt: skip
def test_auto_precision_follows_the_input_dtype(x_dtype, requested, resolved):
    eng = backends.bind(BlockShape(2, 16, 1, 1), device=DEVICE, rows=4, input_dtype=x_dtype,
                        options=Options(requested), backend="triton")  # fmt: skip
    assert eng.options.precision == resolved


def test_tile_override_is_read_at_bind(monkeypatch):
    monkeypatch.setenv(TILE_ENV, "16,4,32,1")
    eng = backends.bind(BlockShape(2, 32, 2, 1), device=DEVICE, rows=40,
                        options=Options("fp32"), backend="triton")  # fmt: skip
    cfg = eng.train_cfg
    assert (cfg.block_m, cfg.num_warps, cfg.chunk, cfg.keep) == (16, 4, 32, 1)
    x, y = torch.rand(40, 2, device=DEVICE), torch.rand(40, 1, device=DEVICE)
    params = mgdl_fast.BlockParams.init(BlockShape(2, 32, 2, 1), seed=1, device=DEVICE)
    grad = torch.empty_like(params.flat)
    loss = eng.step(x, y, params.flat, grad)
    exp_loss, exp_grad = oracle.mse_loss_and_grad(*numpy(params.flat, x, y), eng.shape)
    assert_close(loss, torch.tensor(exp_loss), torch.float32, msg="loss")
    assert_close(grad, torch.from_numpy(exp_grad), torch.float32, msg="dL/dp")


def _image():
    rows, cols = np.mgrid[0:16, 0:16] / 16
    return from_array(0.5 + 0.5 * np.sin(6 * cols) * np.cos(4 * rows))


def _fit(backend, cache_dtype, precision):
    # Gradient descent: Adam scales every gradient element to about lr, so rounding-level
    # differences of near-zero gradients would become lr-sized parameter differences.
    train = TrainConfig(epochs=3, lr=0.05, optimizer="gd", record_every=1, test_every=1,
                        device=str(DEVICE), backend=backend, precision=precision,
                        early_stopping=False, cache_dtype=cache_dtype)  # fmt: skip
    model = ModelConfig(grades=2, width=16, layers=2)
    return mgdl_fast.fit_regression(_image(), model, train, progress=False)


def test_trainer_with_fp32_features_matches_the_torch_backend():
    """fp32 cached features and fp32 products: the torch backend's result at fp32 tolerance
    (the cache dtype is explicit: a bf16 cache would make grade 2 run bf16 products, T1)."""
    tri, ref = _fit("triton", "fp32", "fp32"), _fit("torch", "fp32", "fp32")
    assert set(tri.backends.values()) == {"triton"}
    for grade_tri, grade_ref in zip(tri.model.grades, ref.model.grades):
        assert_close(grade_tri.flat, grade_ref.flat, torch.float32)
    for rec_tri, rec_ref in zip(tri.records, ref.records):
        assert rec_tri.final["test_loss"] == pytest.approx(rec_ref.final["test_loss"], rel=1e-5)


def test_bf16_features_run_bf16_products_within_the_flash_attention_rule():
    """T1: a bf16 feature cache makes the next grade bind bf16 products (auto precision); its
    step is then held to the flash-attention rule, not to fp32 tolerance."""
    shape = BlockShape(16, 16, 2, 1)
    eng = backends.bind(shape, device=DEVICE, rows=64, input_dtype=torch.bfloat16,
                        backend="triton")  # fmt: skip
    assert eng.options.precision == "bf16"
    params = mgdl_fast.BlockParams.init(shape, seed=2, device=DEVICE)
    gen = torch.Generator().manual_seed(3)
    x = torch.relu(torch.randn(64, 16, generator=gen)).to(DEVICE, torch.bfloat16)
    y = torch.rand(64, 1, generator=gen).to(DEVICE)
    grad = torch.empty_like(params.flat)
    eng.step(x, y, params.flat, grad)
    flat, xx, yy = numpy(params.flat, x, y)
    _, exp_grad = oracle.mse_loss_and_grad(flat, xx, yy, shape)
    _, _, low_grad, _ = lowp(flat, xx, shape, y=yy, precision="bf16")
    assert_close_to_oracle(grad, torch.from_numpy(exp_grad), torch.from_numpy(low_grad))

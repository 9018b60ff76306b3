"""The Triton backend inside the engine: its reasons, dispatch, autograd and the trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import mgdl_fast
from mgdl_fast import (
    BackendUnavailableError,
    BlockParams,
    BlockShape,
    InputError,
    ModelConfig,
    TrainConfig,
    dispatch,
    from_array,
)
from mgdl_fast.testing import assert_close

pytestmark = pytest.mark.triton
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def triton_ops():
    why = dispatch.unavailable_reason("triton")
    if why:
        pytest.skip(why)
    from mgdl_fast import _triton

    return _triton


def block(d=2, w=16, layers=2, c=1, n=10, x_dtype=torch.float32):
    params = BlockParams.init(BlockShape(d, w, layers, c), seed=0, device=DEVICE)
    return torch.rand(n, d, device=DEVICE, dtype=x_dtype), params


@pytest.mark.parametrize(
    ("dims", "reason"),
    [
        ((2, 24, 2, 1), "width 24 is not a multiple of 16"),
        ((2, 272, 2, 1), "width 272 is not a multiple of 16 up to 256"),
        ((2, 16, 5, 1), "5 hidden layers"),
        ((2, 16, 2, 5), "5 output channels"),
        ((4, 16, 2, 1), "input dim 4 is neither 1, 2, 3 nor the width 16"),
    ],
)
def test_unsupported_shapes_give_reasons(triton_ops, dims, reason):
    x, params = block(*dims)
    assert any(reason in r for r in triton_ops.unsupported_reasons("grade_step", x, params))
    with pytest.raises(BackendUnavailableError, match=reason):
        dispatch.resolve("grade_step", x, params, backend="triton")


def test_unsupported_inputs_give_reasons(triton_ops):
    x, params = block()
    assert triton_ops.unsupported_reasons("block_fwd", x, params) == []
    why = triton_ops.unsupported_reasons("block_fwd", x.half(), params)
    assert any("dtype torch.float16" in r for r in why)
    assert any(
        "must be [N, 2]" in r for r in triton_ops.unsupported_reasons("block_fwd", x.T, params)
    )
    assert any("no rows" in r for r in triton_ops.unsupported_reasons("block_fwd", x[:0], params))
    assert any(
        "contiguous" in r for r in triton_ops.unsupported_reasons("adam_step", x[:, 0], None)
    )
    assert triton_ops.unsupported_reasons("adam_step", params.flat, params) == []


def test_no_gpu_and_no_interpreter_is_unavailable(triton_ops, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert "no CUDA device" in triton_ops.unavailable_reason()
    x, params = block()
    assert any(
        "Triton needs CUDA tensors" in r
        for r in triton_ops.unsupported_reasons("block_fwd", x, params)
    )


def test_auto_picks_triton_only_for_cuda(triton_ops, monkeypatch):
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    x, params = block()
    expected = "reference" if DEVICE == "cpu" else "triton"
    if DEVICE == "cuda" and not dispatch.reasons("cuda", "grade_step", x, params):
        expected = "cuda"
    assert dispatch.resolve("grade_step", x, params)[0] == expected
    name, fn = dispatch.resolve("grade_step", x, params, backend="triton")
    assert name == "triton" and fn is triton_ops.grade_step


def test_bad_arguments_raise_input_errors(triton_ops):
    x, params = block()
    with pytest.raises(InputError, match="precision must be one of"):
        triton_ops.block_fwd(x, params, precision="fp8")
    with pytest.raises(InputError, match="y must be"):
        triton_ops.grade_step(x, torch.zeros(10, 2, device=DEVICE), params)
    with pytest.raises(InputError, match="features_out must be"):
        triton_ops.block_fwd(x, params, features_out=torch.empty(10, 8, device=DEVICE))
    with pytest.raises(InputError, match="triton cannot run block_fwd"):
        triton_ops.block_fwd(x.double(), params)
    with pytest.raises(InputError, match="exp_avg must be"):
        flat = params.flat
        triton_ops.adam_step(flat, flat.clone(), flat[:3].clone(), flat.clone(), step=1, lr=0.1)


def test_environment_selects_precision(triton_ops, monkeypatch):
    """$MGDL_FAST_TRITON_PRECISION is used for fp32 inputs; an unknown value is refused."""
    x, params = block()
    monkeypatch.setenv(triton_ops.PRECISION_ENV, "ieee")
    ieee = triton_ops.block_fwd(x, params)
    assert_close(ieee, mgdl_fast.reference.block_fwd(x, params), torch.float32)
    monkeypatch.setenv(triton_ops.PRECISION_ENV, "fp64")
    with pytest.raises(InputError, match="precision must be one of"):
        triton_ops.block_fwd(x, params)


def test_autograd_through_triton_matches_reference(triton_ops, monkeypatch):
    monkeypatch.setenv(triton_ops.PRECISION_ENV, "ieee")
    x, params = block(d=16, w=16, layers=2, c=2, n=37)
    results = []
    for backend in ("reference", "triton"):
        xx, flat = x.clone().requires_grad_(), params.flat.clone().requires_grad_()
        out = mgdl_fast.block_forward(xx, BlockParams(params.shape, flat), backend=backend)
        (out.sin().sum()).backward()
        results.append((out.detach(), xx.grad, flat.grad))
    for name, ref, tri in zip(("out", "dL/dx", "dL/dparams"), *results):
        assert_close(tri, ref, torch.float32, msg=name)


def test_trainer_with_triton_matches_reference(triton_ops, monkeypatch):
    """Two grades of a few epochs (grade 2 reads grade 1's cached features, D = W)."""
    monkeypatch.setenv(triton_ops.PRECISION_ENV, "ieee")
    rows, cols = np.mgrid[0:16, 0:16] / 16
    image = from_array(0.5 + 0.5 * np.sin(6 * cols) * np.cos(4 * rows))
    model = ModelConfig(grades=2, width=16, layers=2)
    results = {}
    for backend in ("reference", "triton"):
        train = TrainConfig(epochs=3, record_every=1, test_every=1, device=DEVICE,
                            backend=backend, early_stopping=False)  # fmt: skip
        results[backend] = mgdl_fast.fit_regression(image, model, train, progress=False)
    tri, ref = results["triton"], results["reference"]
    assert set(tri.backends.values()) == {"triton"}
    assert len(tri.model) == len(ref.model) == 2
    for grade_tri, grade_ref in zip(tri.model.grades, ref.model.grades):
        assert_close(grade_tri.flat, grade_ref.flat, torch.float32)
    for rec_tri, rec_ref in zip(tri.records, ref.records):
        assert rec_tri.final["test_loss"] == pytest.approx(rec_ref.final["test_loss"], rel=1e-5)

"""The torch backend's bf16 path (CPU, and CUDA under the ``gpu`` marker): every op against the
float64 oracle by the flash-attention rule (its error at most twice that of the same arithmetic
with bf16 rounding at the same points, ``cases.lowp_reference``), and auto's choice: bf16 on a
device with bf16 products whose check passes."""

from __future__ import annotations

import logging

import pytest
import torch

from mgdl_fast import BlockParams, BlockShape, Options, backends
from mgdl_fast.backends import selfcheck
from mgdl_fast.backends.torch import TorchBackend, bf16
from mgdl_fast.testing import assert_close_to_oracle, poison_buffers, poisoned

from .. import oracle
from .cases import lowp_reference

SHAPES = [(300, 2, 32, 2, 1), (257, 32, 32, 3, 3), (64, 16, 16, 1, 2)]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def _setup(n, d, w, layers, c, x_dtype=torch.float32, device="cpu"):
    """The CPU operands (what the oracle reads) and an engine bound on ``device``."""
    shape = BlockShape(d, w, layers, c)
    params = BlockParams.init(shape, seed=1)
    gen = torch.Generator().manual_seed(2)
    x = torch.relu(torch.randn(n, d, generator=gen)) if d == w else torch.rand(n, d, generator=gen)
    y = torch.rand(n, c, generator=gen)
    with poison_buffers():
        engine = backends.bind(shape, device=device, rows=n, input_dtype=x_dtype,
                               options=Options("bf16"), backend="torch")  # fmt: skip
    return shape, params, x.to(x_dtype), y, engine


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dims", SHAPES)
@pytest.mark.parametrize("x_dtype", [torch.float32, torch.bfloat16])
def test_forward_and_step_by_the_bf16_rule(dims, x_dtype, device):
    shape, params, x, y, engine = _setup(*dims, x_dtype=x_dtype, device=device)
    flat, xd, yd = params.flat.to(device), x.to(device), y.to(device)
    out = poisoned(dims[0], shape.out_dim, device=device)
    engine.forward(xd, flat, out)
    expected, _, _ = oracle.forward(params.flat.double().numpy(), x.double().numpy(), shape)
    low_out, _, low_loss, low_grad, _ = lowp_reference(shape, params.flat, x, "bf16", y=y)
    assert_close_to_oracle(out, torch.from_numpy(expected), low_out, msg="out")
    grad = poisoned(shape.num_params, device=device)
    loss = engine.step(xd, yd, flat, grad)
    exp_loss, exp_grad = oracle.mse_loss_and_grad(
        params.flat.double().numpy(), x.double().numpy(), y.double().numpy(), shape
    )
    assert_close_to_oracle(loss, torch.tensor(exp_loss), low_loss, msg="loss")
    assert_close_to_oracle(grad, torch.from_numpy(exp_grad), low_grad, msg="dL/dparams")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dims", SHAPES)
def test_backward_by_the_bf16_rule(dims, device):
    shape, params, x, _, engine = _setup(*dims, device=device)
    grad_out = torch.randn(dims[0], shape.out_dim, generator=torch.Generator().manual_seed(3))
    grad, grad_x = poisoned(shape.num_params, device=device), poisoned(*x.shape, device=device)
    engine.backward(x.to(device), params.flat.to(device), grad_out.to(device), grad, grad_x)
    exp_grad, exp_grad_x = oracle.backward(
        params.flat.double().numpy(), x.double().numpy(), shape, grad_out.double().numpy()
    )
    _, _, _, low_grad, low_grad_x = lowp_reference(shape, params.flat, x, "bf16", grad_out=grad_out)
    assert_close_to_oracle(grad, torch.from_numpy(exp_grad), low_grad, msg="dL/dparams")
    assert_close_to_oracle(grad_x, torch.from_numpy(exp_grad_x), low_grad_x, msg="dL/dx")


@pytest.mark.auto_precision
def test_auto_is_bf16_where_the_cpu_has_it_and_its_check_passes(monkeypatch):
    monkeypatch.delenv("MGDL_FAST_PRECISION", raising=False)
    monkeypatch.setattr(selfcheck, "_results", {})
    shape = BlockShape(2, 16, 2, 1)
    monkeypatch.setattr(bf16, "cpu_bf16_reason", lambda: None)
    engine = backends.bind(shape, device="cpu", rows=8, backend="torch")
    assert engine.options.precision == "bf16"
    assert engine.self_check["torch-bf16"]["passed"]
    monkeypatch.setattr(bf16, "cpu_bf16_reason", lambda: "this CPU has none of avx512_bf16")
    assert backends.bind(shape, device="cpu", rows=8, backend="torch").options.precision == "fp32"


@pytest.mark.gpu
@pytest.mark.auto_precision
def test_auto_is_bf16_on_a_gpu_with_bf16_tensor_cores(monkeypatch):
    """The fallback a GPU user gets when the kernels cannot serve: tensor-core bf16."""
    monkeypatch.delenv("MGDL_FAST_PRECISION", raising=False)
    monkeypatch.setattr(selfcheck, "_results", {})
    engine = backends.bind(BlockShape(2, 16, 2, 1), device="cuda", rows=8, backend="torch")
    assert engine.options.precision == "bf16"
    assert engine.self_check["torch-bf16"]["passed"]


@pytest.mark.auto_precision
def test_a_failing_bf16_check_falls_back_to_fp32(monkeypatch, caplog):
    monkeypatch.delenv("MGDL_FAST_PRECISION", raising=False)
    monkeypatch.setattr(selfcheck, "_results", {})
    monkeypatch.setattr(bf16, "cpu_bf16_reason", lambda: None)
    right = bf16.step

    def wrong(bufs, x, y, weights, biases, grad_w, grad_b):
        loss = right(bufs, x, y, weights, biases, grad_w, grad_b)
        grad_w[0].mul_(3.0)
        return loss

    monkeypatch.setattr(bf16, "step", wrong)
    with caplog.at_level(logging.WARNING, logger="mgdl_fast"):
        engine = TorchBackend().bind(BlockShape(2, 16, 2, 1), torch.device("cpu"),
                                     torch.float32, 8, Options())  # fmt: skip
    assert engine.options.precision == "fp32"
    assert engine.self_check["torch-bf16"]["passed"] is False
    assert any("using fp32" in r.getMessage() for r in caplog.records)


def test_bf16_on_cuda_needs_bf16_tensor_cores(monkeypatch):
    def reasons():
        return TorchBackend().not_supported_reasons(
            BlockShape(2, 16, 2, 1), torch.device("cuda"), torch.float32, Options("bf16")
        )

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert reasons() == ["bf16 products: cuda has compute capability 7.5 (bf16 tensor cores "
                         "need 8.0)"]  # fmt: skip
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert reasons() == []

"""The cuda backend's engines on a GPU against the float64 NumPy oracle: outputs and every
gradient, NaN-poisoned outputs, awkward N, every width, grade-1 and later-grade inputs, and what
a bound grade promises (no planning per call, CUDA-graph replay, a second fit in one process).

The kernels multiply in bf16 with fp32 accumulation, so results follow the flash-attention
rule (mgdl_fast.testing.assert_close_to_oracle): error vs the fp64 oracle at most twice the
error of the specification block computed in bf16 by torch, plus a small floor. With a GPU
present these tests fail, not skip, when the backend cannot run (conftest.cuda_ready). The
order of the tests and their cases is the sequence plan_replay.py replays on the CPU.
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
    bind,
    block_forward,
    fit_regression,
    from_array,
)
from mgdl_fast.backends import engine as engines
from mgdl_fast.spec import block_apply
from mgdl_fast.testing import assert_close, assert_close_to_oracle, poisoned

from ... import oracle
from . import cases

pytestmark = [pytest.mark.gpu, pytest.mark.cuda_ext, pytest.mark.usefixtures("cuda_ready")]


def make(n, d, w, layers, c, x_dtype=torch.float32, seed=0):
    shape = BlockShape(d, w, layers, c)
    params = BlockParams.init(shape, seed=seed, device="cuda")
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.rand(n, d, generator=gen)
    x = torch.relu(x - 0.3) if d == w else x
    y = torch.rand(n, c, generator=gen)
    return shape, params, x.to("cuda", x_dtype), y.to("cuda")


def engine_for(shape, x):
    return bind(shape, device="cuda", rows=x.shape[0], input_dtype=x.dtype, backend="cuda")


def np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().double().cpu().numpy()


def lowp_forward(params: BlockParams, x: torch.Tensor):
    """(out, features) of the specification block computed in bf16 by torch."""
    flat = params.flat.to(torch.bfloat16)
    return block_apply(flat, x.to(torch.bfloat16), params.shape, return_features=True)


def lowp_grads(params: BlockParams, x: torch.Tensor, loss_fn):
    """(loss, dL/dflat, dL/dx) of the specification block in bf16 for loss_fn(out)."""
    flat = params.flat.to(torch.bfloat16).requires_grad_()
    xb = x.to(torch.bfloat16).requires_grad_()
    loss = loss_fn(block_apply(flat, xb, params.shape))
    loss.backward()
    return loss.detach(), flat.grad, xb.grad


@pytest.mark.parametrize("case", cases.CASES, ids=cases.case_id)
def test_forward_matches_oracle(case):
    shape, params, x, _ = make(*case[0], x_dtype=case[1])
    expected, _, hs = oracle.forward(np64(params.flat), np64(x), shape)
    ref_out, ref_feats = lowp_forward(params, x)
    out = poisoned(x.shape[0], shape.out_dim, device="cuda")
    feats = poisoned(x.shape[0], shape.width, device="cuda")
    engine_for(shape, x).forward(x, params.flat, out, feats)
    assert_close_to_oracle(out, torch.from_numpy(expected), ref_out, msg="out")
    assert_close_to_oracle(feats, torch.from_numpy(hs[-1]), ref_feats, msg="features")


def test_forward_writes_bf16_features():
    shape, params, x, _ = make(*cases.BF16_FEATURES, x_dtype=torch.bfloat16)
    expected, _, hs = oracle.forward(np64(params.flat), np64(x), shape)
    ref_out, ref_feats = lowp_forward(params, x)
    out = poisoned(x.shape[0], shape.out_dim, device="cuda")
    feats = poisoned(x.shape[0], shape.width, dtype=torch.bfloat16, device="cuda")
    engine_for(shape, x).forward(x, params.flat, out, feats)
    assert_close_to_oracle(out, torch.from_numpy(expected), ref_out, msg="out")
    # Rounding the fp32 features to bf16 adds at most half a bf16 ulp to the reference's error.
    assert_close_to_oracle(feats, torch.from_numpy(hs[-1]), ref_feats, msg="bf16 features")


@pytest.mark.parametrize("case", cases.CASES, ids=cases.case_id)
def test_backward_matches_oracle(case):
    shape, params, x, _ = make(*case[0], x_dtype=case[1])
    grad_out = torch.randn(x.shape[0], shape.out_dim, device="cuda")
    exp_grad, exp_grad_x = oracle.backward(np64(params.flat), np64(x), shape, np64(grad_out))
    _, ref_grad, ref_grad_x = lowp_grads(params, x, lambda out: (out * grad_out).sum())
    grad = poisoned(shape.num_params, device="cuda")
    grad_x = poisoned(*x.shape, device="cuda")
    engine_for(shape, x).backward(x, params.flat, grad_out, grad, grad_x)
    assert_close_to_oracle(grad, torch.from_numpy(exp_grad), ref_grad, msg="dL/dparams")
    assert_close_to_oracle(grad_x, torch.from_numpy(exp_grad_x), ref_grad_x, msg="dL/dx")


@pytest.mark.parametrize("case", cases.CASES, ids=cases.case_id)
def test_step_matches_oracle(case):
    shape, params, x, y = make(*case[0], x_dtype=case[1])
    exp_loss, exp_grad = oracle.mse_loss_and_grad(np64(params.flat), np64(x), np64(y), shape)
    ref_loss, ref_grad, _ = lowp_grads(params, x, lambda out: 0.5 * torch.mean((out - y) ** 2))
    grad = poisoned(shape.num_params, device="cuda")
    loss = engine_for(shape, x).step(x, y, params.flat, grad)
    assert loss.shape == () and loss.device.type == "cuda"
    assert_close_to_oracle(loss, torch.tensor(exp_loss), ref_loss, msg="loss")
    assert_close_to_oracle(grad, torch.from_numpy(exp_grad), ref_grad, msg="dL/dparams")


def test_step_is_deterministic():
    shape, params, x, y = make(*cases.DETERMINISM, x_dtype=torch.bfloat16)
    engine = engine_for(shape, x)
    grads = [torch.empty_like(params.flat) for _ in range(2)]
    losses = [engine.step(x, y, params.flat, g).clone() for g in grads]
    assert torch.equal(grads[0], grads[1]) and torch.equal(losses[0], losses[1])


def test_no_planning_per_call():
    shape, params, x, y = make(*cases.NO_PLANNING)
    engine = engine_for(shape, x)
    out, grad = torch.empty(x.shape[0], 1, device="cuda"), torch.empty_like(params.flat)
    before = (engines.counters.plans, engines.counters.buffers)
    engine.forward(x, params.flat, out)
    engine.step(x, y, params.flat, grad)
    assert (engines.counters.plans, engines.counters.buffers) == before
    assert engine.train_plan.kernel == "block_train_kernel<128, 8>"


def test_cuda_graph_replays_steps():
    shape, params, x, y = make(*cases.GRAPH, x_dtype=torch.bfloat16)
    engine = engine_for(shape, x)
    eager, grad = torch.empty_like(params.flat), torch.empty_like(params.flat)
    expected = engine.step(x, y, params.flat, eager).clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        engine.step(x, y, params.flat, grad)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        loss = engine.step(x, y, params.flat, grad)
    grad.fill_(float("nan"))
    graph.replay()
    torch.cuda.synchronize()
    assert torch.equal(grad, eager) and torch.equal(loss, expected)


def test_second_fit_in_one_process():
    """C1: a grade-2 plan of the same kernel made after grade 1's must not lower the kernel's
    shared-memory attribute under grade 1's larger plan (then a second fit failed to launch)."""
    first, later = cases.SECOND_FIT
    shape1, params1, x1, y1 = make(*first)
    shape2, params2, x2, y2 = make(*later, x_dtype=torch.bfloat16)
    engine1 = engine_for(shape1, x1)
    grads = [torch.empty_like(params1.flat) for _ in range(3)]
    engine1.step(x1, y1, params1.flat, grads[0])
    engine_for(shape2, x2).step(x2, y2, params2.flat, torch.empty_like(params2.flat))
    engine_for(shape1, x1).step(x1, y1, params1.flat, grads[1])
    engine1.step(x1, y1, params1.flat, grads[2])
    torch.cuda.synchronize()
    assert torch.equal(grads[0], grads[1]) and torch.equal(grads[0], grads[2])


def test_block_forward_autograd():
    shape, params, x, _ = make(*cases.AUTOGRAD)
    x.requires_grad_()
    flat = params.flat.clone().requires_grad_()
    out = block_forward(x, BlockParams(shape, flat), backend="cuda")
    grad_out = torch.randn_like(out)
    out.backward(grad_out)
    exp_grad, exp_grad_x = oracle.backward(np64(params.flat), np64(x), shape, np64(grad_out))
    _, ref_grad, ref_grad_x = lowp_grads(params, x.detach(), lambda o: (o * grad_out).sum())
    assert_close_to_oracle(flat.grad, torch.from_numpy(exp_grad), ref_grad, msg="dL/dparams")
    assert_close_to_oracle(x.grad, torch.from_numpy(exp_grad_x), ref_grad_x, msg="dL/dx")


@pytest.mark.parametrize("kind", ["adam", "gd"])
def test_updates_match_the_torch_backend(kind):
    shape, params, x, _ = make(*cases.OPTIMIZER)
    ours = engine_for(shape, x)
    theirs = bind(shape, device="cuda", rows=x.shape[0], backend="torch")
    flats = [params.flat.clone(), params.flat.clone()]
    states = [e.optimizer_state(kind, 1e-3, shape.num_params) for e in (ours, theirs)]
    gen = torch.Generator(device="cuda").manual_seed(5)
    for _ in range(3):
        grad = torch.randn(shape.num_params, device="cuda", generator=gen)
        for engine, flat, state in zip((ours, theirs), flats, states):
            engine.update(flat, grad, state)
    assert_close(flats[0], flats[1], torch.float32, msg="params")
    if kind == "adam":
        assert_close(states[0].exp_avg, states[1].exp_avg, torch.float32, msg="exp_avg")
        assert_close(states[0].exp_avg_sq, states[1].exp_avg_sq, torch.float32, msg="exp_avg_sq")


def test_trainer_epochs_match_the_torch_backend():
    rng = np.random.default_rng(0)
    image = from_array(rng.random((48, 40)).astype(np.float32))
    model = ModelConfig(grades=len(cases.TRAINER_GRADES), width=64, layers=2)
    finals = {}
    for backend in ("torch", "cuda"):
        train = TrainConfig(epochs=40, device="cuda", backend=backend, early_stopping=False,
                            record_every=10, test_every=10)  # fmt: skip
        result = fit_regression(image, model, train, progress=False)
        assert result.backends["step"] == backend and result.diverged is None
        finals[backend] = result.records[-1].final["train_loss"]
    # bf16 products change the trajectory slightly; 40 Adam epochs stay within a few percent.
    assert finals["cuda"] == pytest.approx(finals["torch"], rel=0.05)

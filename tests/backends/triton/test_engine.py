"""The Triton engine's host side and its defect fixes: NaN through ReLU (T2), launches on the
tensors' device (T6), optimizer scalars read from device memory (T10), GD and Adam against the
torch backend, and the plans (partial-row stride, programs, tile configs)."""

from __future__ import annotations

import contextlib

import pytest
import torch
from mgdl_fast.kernels import _config

from mgdl_fast import BlockParams, BlockShape, Options, backends
from mgdl_fast.backends.triton import plans
from mgdl_fast.testing import assert_close

from .common import DEVICE, SM90_PROGRAMS, engine, inputs, round_to

pytestmark = pytest.mark.triton


@pytest.mark.parametrize(
    ("dims", "precision", "x_dtype"),
    [((17, 2, 128, 2, 1), "bf16", torch.float32), ((17, 128, 128, 3, 1), "bf16", torch.bfloat16),
     ((17, 3, 48, 2, 2), "fp32", torch.float32)],
    ids=["grade1-bf16", "grade2-L3-bf16", "odd-fp32"],
)  # fmt: skip
def test_one_nan_weight_makes_outputs_and_loss_nan(dims, precision, x_dtype):
    """T2: relu(NaN) must be NaN (PTX max.NaN.f32, checked in test_aot.py), or a diverged grade
    reports a finite loss. One NaN in the first W x W weight reaches every output."""
    n, d, w, layers, c = dims
    shape, params, x, y = inputs(n, d, w, layers, c, x_dtype=x_dtype)
    first = 0 if d == w else 1
    params.flat[shape.offsets[first][0] + 5] = float("nan")
    eng = engine(shape, n, precision, True, x_dtype)
    out = torch.zeros(n, c, device=DEVICE)
    eng.forward(x, params.flat, out)
    assert torch.isnan(out).all()
    grad = torch.zeros_like(params.flat)
    assert torch.isnan(eng.step(x, y, params.flat, grad))
    assert torch.isnan(grad).any()
    eng.backward(x, params.flat, torch.ones(n, c, device=DEVICE), grad)
    assert torch.isnan(grad).any()


def test_launches_run_on_the_grade_device(monkeypatch):
    """T6: Triton launches on the current CUDA device, so every op enters the engine's device
    (a recording guard stands in for torch.cuda.device here)."""
    entered, seen = [], []

    @contextlib.contextmanager
    def guard():
        entered.append(True)
        yield
        entered.pop()

    shape, params, x, y = inputs(20, 2, 16, 1, 1)
    eng = engine(shape, 20)
    monkeypatch.setattr(eng, "_device", guard())
    monkeypatch.setattr(plans.Launch, "run", lambda self: seen.append(bool(entered)))
    eng.forward(x, params.flat, torch.empty(20, 1, device=DEVICE))
    assert seen == [True]


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_a_grade_on_the_second_gpu_matches_the_first():
    """T6 on hardware: a grade bound to cuda:1 while cuda:0 is current."""
    shape = BlockShape(2, 128, 2, 1)
    params = BlockParams.init(shape, seed=0)
    x, y = torch.rand(5000, 2), torch.rand(5000, 1)
    losses = []
    for index in (0, 1):
        dev = torch.device("cuda", index)
        eng = backends.bind(shape, device=dev, rows=5000, options=Options("tf32"),
                            backend="triton")  # fmt: skip
        grad = torch.empty(shape.num_params, device=dev)
        with torch.cuda.device(0):
            loss = eng.step(x.to(dev), y.to(dev), params.flat.to(dev), grad)
        losses.append(loss.item())
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)


def _states(kind, n, lr=1e-2):
    eng = engine(BlockShape(2, 16, 1, 1), 8)
    torch_eng = backends.bind(BlockShape(2, 16, 1, 1), device=DEVICE, rows=8, backend="torch")
    return eng, torch_eng, eng.optimizer_state(kind, lr, n), torch_eng.optimizer_state(kind, lr, n)


@pytest.mark.parametrize("kind", ["adam", "gd"])
def test_updates_match_the_torch_backend(kind):
    gen = torch.Generator().manual_seed(3)
    p = torch.randn(3000, generator=gen).to(DEVICE)
    grads = [torch.randn(3000, generator=gen).to(DEVICE) for _ in range(7)]
    eng, ref, state, ref_state = _states(kind, 3000)
    want = p.clone()
    for g in grads:
        eng.update(p, g, state)
        ref.update(want, g, ref_state)
    assert_close(p, want, torch.float32, msg="params")
    if kind == "adam":
        assert_close(state.exp_avg, ref_state.exp_avg, torch.float32, msg="exp_avg")
        assert_close(state.exp_avg_sq, ref_state.exp_avg_sq, torch.float32, msg="exp_avg_sq")


def test_adam_replays_one_set_of_launches_with_device_scalars():
    """T10: the Adam launch built at step 1 replayed for steps 2..6 (what a captured CUDA graph
    does) matches fresh updates: the step size and bias corrections come from device memory,
    the host passes nothing that depends on the step."""
    gen = torch.Generator().manual_seed(4)
    p = torch.randn(1500, generator=gen).to(DEVICE)
    grads = [torch.randn(1500, generator=gen).to(DEVICE) for _ in range(6)]
    eng, ref, state, ref_state = _states("adam", 1500)
    want, g = p.clone(), torch.empty_like(p)
    state.advance()
    launches = eng.update_launches(p, g, state)
    for step, grad in enumerate(grads):
        if step:
            state.advance()
        g.copy_(grad)
        for launch in launches:
            launch.run()
        ref.update(want, grad, ref_state)
    assert_close(p, want, torch.float32, msg="params after replayed Adam steps")


def test_partial_rows_are_padded_and_programs_fill_the_gpu():
    shape = BlockShape(128, 128, 2, 1)
    eng = engine(shape, 1 << 16, "bf16", True, torch.bfloat16)
    plan = eng._train_plan(1 << 16)
    assert plan.programs == SM90_PROGRAMS
    assert plan.stride % _config.PARTIAL_ALIGN == 0 and plan.stride > shape.num_params
    small = eng._train_plan(1)
    assert small.programs == 1 and small.tiles == 1


@pytest.mark.parametrize("width", [16, 48, 128, 144, 256])
def test_mma_layouts_cover_their_chunks(width):
    """16 rows per warp: 8 warps for 128-feature chunks, 4 for 64 (a layout wider than its
    chunk would compute the same rows twice, T3)."""
    for training in (True, False):
        cfg = _config.tile_config(2, width, 2, "bf16", training=training)
        assert cfg.chunk >= 64 or width < 64
        if cfg.chunk >= 64:
            assert 16 * cfg.num_warps == cfg.chunk
        assert cfg.num_stages >= 2 or not cfg.resident


def test_tf32_weights_are_rounded_to_nearest():
    """T7: the engine hands tf32 kernels weights rounded to nearest, ties away (cvt.rna), not
    left for the tensor cores to truncate; activations are rounded the same way in-kernel."""
    shape, params, _, _ = inputs(4, 2, 128, 2, 1)
    eng = engine(shape, 4, "tf32")
    weights = eng._weights(params.flat, eng.train_cfg).cpu()
    want = round_to(params.flat.double().cpu().numpy(), "tf32")
    assert torch.equal(weights.double(), torch.from_numpy(want))
    assert not torch.equal(weights, params.flat.cpu())


def test_interpreter_uses_the_bf16_emulation():
    eng = engine(BlockShape(2, 16, 1, 1), 4, "bf16")
    assert eng.dot == ("bf16" if DEVICE.type == "cuda" else "bf16emu")

"""What each backend declares it allocates (``Backend.memory``, read by the memory planner)
against what a bound engine does allocate; and planning a fit, suggestions included, binds
nothing and launches nothing."""

from __future__ import annotations

import pytest
import torch

from mgdl_fast import BlockShape, Options, backends
from mgdl_fast.backends import selfcheck
from mgdl_fast.backends.engine import counters
from mgdl_fast.tasks import TASKS
from mgdl_fast.train.memory import Problem, estimate, suggestions

CPU = torch.device("cpu")
SHAPES = [BlockShape(2, 32, 2, 1), BlockShape(32, 32, 3, 3), BlockShape(3, 48, 1, 2)]


def bound_bytes(name, shape, dtype, rows, precision) -> int:
    before = counters.buffer_bytes
    backends.bind(shape, device=CPU, rows=rows, input_dtype=dtype, options=Options(precision),
                  backend=name)  # fmt: skip
    return counters.buffer_bytes - before


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32in", "bf16in"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_torch_backend_declares_exactly_what_it_allocates(shape, dtype, precision):
    declared = backends.get_backend("torch").memory(shape, CPU, dtype, Options(precision))
    for rows in (1, 17, 1000):
        assert declared.bytes(rows) == bound_bytes("torch", shape, dtype, rows, precision)


def test_auto_precision_declares_the_larger_of_what_auto_may_pick(monkeypatch):
    from mgdl_fast.backends.torch import bf16

    torch_backend = backends.get_backend("torch")
    shape = SHAPES[0]
    monkeypatch.setattr(bf16, "cpu_bf16_reason", lambda: None)
    auto = torch_backend.memory(shape, CPU, torch.float32, Options("auto"))
    for precision in ("fp32", "bf16"):
        one = torch_backend.memory(shape, CPU, torch.float32, Options(precision))
        assert auto.fixed >= one.fixed and auto.per_row >= one.per_row


@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16"])
def test_the_triton_backend_declares_what_it_allocates(shape, precision):
    why = backends.reasons("triton", shape, CPU, torch.float32, Options(precision))
    if why:
        pytest.skip("; ".join(why))
    declared = backends.get_backend("triton").memory(shape, CPU, torch.float32, Options(precision))
    # At most: a launch's partial rows are declared for every program the device runs.
    assert declared.bytes(5) >= bound_bytes("triton", shape, torch.float32, 5, precision)
    for rows in (1000, 4096):
        assert declared.bytes(rows) == bound_bytes("triton", shape, torch.float32, rows, precision)


def test_planning_a_fit_and_its_suggestions_binds_and_launches_nothing(monkeypatch):
    def no_check(*args, **kwargs):
        raise AssertionError("planning must not run a self-check")

    monkeypatch.setattr(selfcheck, "validate", no_check)
    problem = Problem(
        height=2048, width=2048, channels=1, terms=TASKS["regression"].memory,
        shapes=(BlockShape(128, 128, 2, 1), BlockShape(128, 128, 2, 1)), cache_bytes=4,
        precision="auto", backend=None, device=CPU, stream=False, feature_store="memory",
        chunk_size=1 << 16, load_image=True,
    )  # fmt: skip
    binds, plans, buffers = counters.binds, counters.plans, counters.buffers
    total = estimate(problem, 0).total
    found = suggestions(problem, 0, total // 4)
    assert found and estimate(problem, 0).parts["engine"] > 0
    assert (counters.binds, counters.plans, counters.buffers) == (binds, plans, buffers)

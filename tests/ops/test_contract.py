"""The backend contract: the same bad input gets the same error from every backend; a grade a
backend does not serve is refused with every reason; bound ops plan and allocate nothing."""

from __future__ import annotations

import pytest
import torch

from mgdl_fast import (
    BackendUnavailableError,
    BlockParams,
    BlockShape,
    InputError,
    Options,
    backends,
)
from mgdl_fast.backends import engine as engine_module

from .cases import DEVICE, backend_params, cases

SHAPE = BlockShape(2, 16, 2, 1)
N = 12


def _good():
    params = BlockParams.init(SHAPE, seed=0, device=DEVICE)
    return params.flat, torch.rand(N, 2, device=DEVICE), torch.rand(N, 1, device=DEVICE)


BAD_INPUTS = {
    "int x": lambda f, x, y: dict(x=x.long(), params=f),
    "float64 x": lambda f, x, y: dict(x=x.double(), params=f),
    "1-D x": lambda f, x, y: dict(x=x[:, 0], params=f),
    "3-D x": lambda f, x, y: dict(x=x[None], params=f),
    "wrong D": lambda f, x, y: dict(x=torch.rand(N, 3, device=DEVICE), params=f),
    "no rows": lambda f, x, y: dict(x=x[:0], params=f),
    "strided x": lambda f, x, y: dict(x=torch.rand(2, N, device=DEVICE).T, params=f),
    "not a tensor": lambda f, x, y: dict(x=x.tolist(), params=f),
    "short params": lambda f, x, y: dict(x=x, params=f[:-1]),
    "float64 params": lambda f, x, y: dict(x=x, params=f.double()),
    "targets rows": lambda f, x, y: dict(x=x, params=f, targets=y[:-1]),
    "bf16 targets": lambda f, x, y: dict(x=x, params=f, targets=y.bfloat16()),
}


def _error(name: str, bad: str) -> tuple[type, str]:
    engine = backends.bind(SHAPE, device=DEVICE, rows=N, backend=name)
    with pytest.raises(InputError) as info:
        engine.validate(**BAD_INPUTS[bad](*_good()))
    return type(info.value), str(info.value)


@pytest.mark.parametrize("bad", sorted(BAD_INPUTS))
def test_the_same_bad_input_gets_the_same_error_on_every_backend(bad):
    runnable = [p.values[0] for p in backend_params() if not p.marks]
    errors = {name: _error(name, bad) for name in runnable}
    assert len(set(errors.values())) == 1, errors
    ((_, message),) = set(errors.values())
    assert "\n" not in message


@pytest.mark.parametrize("case", cases(served=False))
def test_an_unserved_grade_is_refused_with_every_reason(case):
    why = backends.reasons(case.backend, case.shape, DEVICE, torch.float32, case.options)
    with pytest.raises(BackendUnavailableError) as info:
        case.bind()
    assert info.value.reasons == why and all(r in str(info.value) for r in why)


@pytest.mark.parametrize("case", cases())
def test_bound_ops_plan_and_allocate_nothing(case):
    params, x, y = case.inputs()
    engine = case.bind()
    engine.validate(x, params.flat, targets=y)
    grad = torch.empty_like(params.flat)
    out = torch.empty(case.n, case.shape.out_dim, device=DEVICE)
    state = engine.optimizer_state("adam", 1e-3, params.flat.numel())
    before = engine_module.Counters(**vars(engine_module.counters))
    for _ in range(3):
        engine.step(x, y, params.flat, grad)
        engine.update(params.flat, grad, state)
        engine.forward(x, params.flat, out)
        engine.backward(x, params.flat, out, grad)
    assert engine_module.counters == before


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("in_dim", [2, 32])
def test_a_torch_epoch_allocates_no_memory(precision, in_dim):
    """The profiler sees every CPU allocation: a bound step + update makes none."""
    params = BlockParams.init(BlockShape(in_dim, 32, 3, 2), seed=0)
    x, y = torch.rand(500, in_dim), torch.rand(500, 2)
    engine = backends.bind(
        params.shape, device="cpu", rows=500, options=Options(precision), backend="torch"
    )
    grad = torch.empty_like(params.flat)
    state = engine.optimizer_state("adam", 1e-3, params.flat.numel())
    engine.step(x, y, params.flat, grad)
    with torch.profiler.profile(profile_memory=True) as prof:
        for _ in range(3):
            engine.step(x, y, params.flat, grad)
            engine.update(params.flat, grad, state)
    allocations = [e for e in prof.events() if e.name == "[memory]" and e.cpu_memory_usage > 0]
    assert allocations == [], [(e.cpu_memory_usage) for e in allocations]

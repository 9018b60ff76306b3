"""torch.compile and torch.export over the mgdl_fast ops: one graph with no break and a
dynamic N, matching eager; an exported program holds one op node; and tracing leaves nothing
behind (an export, then eager calls and a fit, give exactly what they gave before)."""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

import mgdl_fast as mf
from mgdl_fast import BlockParams, block_forward, ops

from ..helpers import small_camera
from ..ops.cases import backend_params
from .cases import SHAPE, config, data

# Dynamo and AOTAutograd still call torch.jit.script_method internally.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script:DeprecationWarning")


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    counters.clear()
    yield
    torch._dynamo.reset()


def _loss_and_grads(fn, x, flat):
    flat = flat.clone().requires_grad_()
    x = x.clone().requires_grad_()
    loss = fn(x, flat)
    return (loss, *torch.autograd.grad(loss, (x, flat)))


@pytest.mark.parametrize("name", backend_params())
def test_fullgraph_compile_matches_eager_with_a_dynamic_n(name):
    kw = config(name)

    def fn(x, flat):
        out, features = block_forward(x, BlockParams(SHAPE, flat), return_features=True, **kw)
        return (out.sin() * out).sum() + features.mean()

    compiled = torch.compile(fn, fullgraph=True, dynamic=True, backend="aot_eager")
    for n in (9, 17):
        params, x, _ = data(n)
        got, want = _loss_and_grads(compiled, x, params.flat), _loss_and_grads(fn, x, params.flat)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    assert not counters["graph_break"]
    assert counters["stats"]["unique_graphs"] == 1


def test_inductor_compiles_the_modules_with_the_ops_inside():
    grade = mf.Grade(SHAPE, seed=0)
    model = mf.MultiGrade([grade, mf.Grade(mf.BlockShape(16, 16, 1, 2), seed=1)], [1.0, 0.5])
    compiled = torch.compile(lambda x: torch.tanh(grade(x)) * 2 + model(x), fullgraph=True)
    _, x, _ = data(13)
    torch.testing.assert_close(compiled(x), torch.tanh(grade(x)) * 2 + model(x))
    assert not counters["graph_break"]


def _export(n: int):
    grade = mf.nn.Grade(SHAPE, seed=0, backend="torch")
    program = torch.export.export(
        grade, (data(n)[1],), dynamic_shapes=({0: torch.export.Dim("n", min=1)},)
    )
    return grade, program


def test_export_keeps_one_op_node_with_a_dynamic_n():
    grade, program = _export(11)
    calls = [n for n in program.graph.nodes if n.op == "call_function"]
    ops_called = [n.target for n in calls if "mgdl_fast" in str(n.target)]
    assert ops_called == [torch.ops.mgdl_fast.block_fwd.default]
    for n in (1, 11, 30):
        x = data(n)[1]
        torch.testing.assert_close(program.module()(x), grade(x), rtol=0, atol=0)


def _eager_and_fit():
    """A forward and a backward at N = 11 through the op engines, a few fused steps through
    the ops, and a short fit: everything the old torch scratch cache corrupted."""
    params, x, y = data(11)
    flat = params.flat.clone().requires_grad_()
    out = block_forward(x, BlockParams(SHAPE, flat), backend="torch")
    (grad,) = torch.autograd.grad(out.square().sum(), flat)
    p = BlockParams(SHAPE, params.flat.clone())
    m, v, step = (
        torch.zeros_like(p.flat),
        torch.zeros_like(p.flat),
        torch.zeros((), dtype=torch.float64),
    )
    losses = []
    for _ in range(5):
        loss, g = ops.grade_step(x, y, p, backend="torch")
        ops.adam_step(p, g, m, v, step, lr=1e-2, backend="torch")
        losses.append(loss)
    image = small_camera(16)
    cfg = mf.TrainConfig(epochs=30, lr=1e-2, device="cpu", backend="torch", early_stopping=False)
    fit = mf.fit_regression(image, mf.ModelConfig(grades=2, width=16, layers=1), cfg,
                            progress=False)  # fmt: skip
    return [out, grad, p.flat, torch.stack(losses), *(g.flat for g in fit.model.grades)]


def test_export_then_eager_and_fit_are_exact():
    before = _eager_and_fit()
    engines = len(ops.cached_engines())
    _export(11)
    after = _eager_and_fit()
    for a, b in zip(after, before):
        assert torch.equal(a, b)
    assert len(ops.cached_engines()) == engines

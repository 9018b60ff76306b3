"""Engines and their scratch buffers are real tensors, whatever traced the ops: fake and meta
inputs, FakeTensorMode, functionalization, make_fx and torch.func wrappers bind nothing, and
an engine asked for from a tracing context raises TracingError instead of caching one."""

from __future__ import annotations

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensor, FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx

from mgdl_fast import BlockParams, block_forward, ops
from mgdl_fast.ops import library
from mgdl_fast.ops.engines import TracingError, engine_for

from .cases import DIMS, SHAPE, data


def _tensors(obj, depth: int = 0):
    """Every tensor an engine holds, through its buffer objects (two levels down)."""
    for value in vars(obj).values():
        items = value if isinstance(value, (list, tuple)) else [value]
        for item in items:
            if isinstance(item, torch.Tensor):
                yield item
            elif depth < 2 and hasattr(item, "__dict__") and not isinstance(item, type):
                yield from _tensors(item, depth + 1)


def _assert_real_engines():
    engines = ops.cached_engines()
    assert engines
    for engine in engines:
        for t in _tensors(engine):
            assert type(t) is torch.Tensor and t.device.type != "meta", (engine, type(t))
            assert not torch._is_functional_tensor(t)


@pytest.fixture
def warm():
    """One real call first, so there is a kept engine whose buffers a trace could spoil."""
    ops.clear_engines()
    params, x, _ = data()
    block_forward(x, params, backend="torch")
    yield params, x
    ops.clear_engines()


def test_fake_and_meta_inputs_bind_nothing(warm):
    params, x = warm
    before = ops.cached_engines()
    with FakeTensorMode() as mode:
        fake_x, fake_flat = mode.from_tensor(x), mode.from_tensor(params.flat)
        out = block_forward(fake_x, BlockParams(SHAPE, fake_flat), backend="torch")
        loss, grad = ops.grade_step(
            fake_x, torch.zeros(x.shape[0], 2), BlockParams(SHAPE, fake_flat)
        )
    assert isinstance(out, FakeTensor) and out.shape == (x.shape[0], 2)
    assert loss.shape == () and grad.shape == params.flat.shape
    meta = block_forward(x.to("meta"), BlockParams(SHAPE, params.flat.to("meta")), backend="torch")
    assert meta.device.type == "meta" and meta.shape == (x.shape[0], 2)
    assert ops.cached_engines() == before
    _assert_real_engines()


@pytest.mark.parametrize("mode", ["fake", "symbolic"])
def test_make_fx_traces_the_op_and_binds_nothing(warm, mode):
    params, x = warm
    before = ops.cached_engines()
    graph = make_fx(lambda x, f: library.block_fwd(x, f, DIMS, "torch"), tracing_mode=mode)(
        x, params.flat
    )
    assert "mgdl_fast.block_fwd" in graph.code
    assert ops.cached_engines() == before
    torch.testing.assert_close(graph(x, params.flat), block_forward(x, params, backend="torch"))
    _assert_real_engines()


def test_functionalized_calls_run_on_real_engines(warm):
    params, x = warm
    ops.clear_engines()
    out = torch.func.functionalize(lambda x: block_forward(x, params, backend="torch"))(x)
    torch.testing.assert_close(out, block_forward(x, params, backend="torch"))
    _assert_real_engines()


def test_an_engine_for_a_tracing_tensor_is_refused(warm):
    params, x = warm
    before = ops.cached_engines()

    def lend(x):
        with engine_for("block_fwd", SHAPE, x, backend="torch"):
            return x

    with FakeTensorMode() as mode:
        fake = mode.from_tensor(x)
        with pytest.raises(TracingError, match="FakeTensor"):
            lend(fake)
        # A real tensor, but any buffer bound now would be fake.
        with pytest.raises(TracingError, match="active fake"):
            lend(x)
    with pytest.raises(TracingError, match="meta"):
        lend(x.to("meta"))
    with pytest.raises(TracingError, match="functional"):
        torch.func.functionalize(lend)(x)
    with pytest.raises(TracingError, match="torch.func"):
        torch.func.vmap(lend)(x[None])
    assert ops.cached_engines() == before

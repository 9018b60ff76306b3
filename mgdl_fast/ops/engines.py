"""The engines the torch.library ops run on: bound on first use, for real tensors only.

An op call binds (or reuses) the engine of its shape, device, input dtype, row count, backend
and options. Engine buffers are real tensors that later calls compute in, so an engine is never
bound from a tracing context (a FakeTensor, a meta tensor, a functional or functorch-wrapped
tensor, or an active fake or functional mode): a buffer made there would be fake, and every
later call at that key would compute in it. The ops trace through their fake implementations
instead, which bind nothing.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch._subclasses.fake_tensor import FakeTensor

from ..backends import bind, requested_backend
from ..backends.base import Options
from ..backends.engine import Engine
from ..block import BlockShape
from ..errors import MGDLError

__all__ = ["MAX_ENGINES", "TracingError", "cached_engines", "clear_engines", "engine_for"]

MAX_ENGINES = 8
_engines: OrderedDict[tuple, Engine] = OrderedDict()
_MODES = (torch._C._TorchDispatchModeKey.FAKE, torch._C._TorchDispatchModeKey.FUNCTIONAL)


class TracingError(MGDLError, RuntimeError):
    """An engine was asked for from a tracing context (see the module docstring)."""


def _tracing_reason(t: torch.Tensor) -> str | None:
    if isinstance(t, FakeTensor):
        return "a FakeTensor"
    if t.device.type == "meta":
        return "a meta tensor"
    if torch._is_functional_tensor(t):
        return "a functional tensor"
    if torch._C._functorch.is_functorch_wrapped_tensor(t):
        return "a torch.func-wrapped tensor"
    if any(torch._C._get_dispatch_mode(key) is not None for key in _MODES):
        return "a tensor under an active fake or functional mode"
    return None


def engine_for(
    op: str,
    shape: BlockShape,
    x: torch.Tensor,
    *,
    rows: int | None = None,
    backend: str | None = None,
    precision: str | None = None,
    deterministic: bool | None = None,
) -> Engine:
    """The engine serving op ``op`` on ``x`` (its device and dtype; ``rows`` default
    ``x.shape[0]``), bound on first use and kept for the next call with the same key (the
    ``MAX_ENGINES`` used last). ``backend``, ``precision`` and ``deterministic`` None mean
    the environment's (``$MGDL_FAST_BACKEND``, ...) as read now. Raises TracingError for a
    tensor from a tracing context."""
    why = _tracing_reason(x)
    if why is not None:
        raise TracingError(
            f"mgdl_fast::{op} got {why}: engines bind only for real tensors (call the "
            "torch.ops.mgdl_fast ops under tracing; they trace through their fake kernels)"
        )
    options = Options.from_env(precision, deterministic)
    name = requested_backend(backend)
    rows = x.shape[0] if rows is None else rows
    key = (shape, x.device, x.dtype, rows, name, options)
    engine = _engines.pop(key, None)
    if engine is None:
        engine = bind(
            shape, device=x.device, rows=rows, input_dtype=x.dtype, options=options, backend=name
        )
    _engines[key] = engine
    while len(_engines) > MAX_ENGINES:
        _engines.popitem(last=False)
    return engine


def cached_engines() -> list[Engine]:
    """The engines kept for the next calls, least recently used first."""
    return list(_engines.values())


def clear_engines() -> None:
    """Drop every kept engine (their buffers are freed with them)."""
    _engines.clear()

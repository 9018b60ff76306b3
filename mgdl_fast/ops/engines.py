"""The engines the torch.library ops run on: a pool of bound engines, each lent to one call at
a time, bound for real tensors only, in a clean mode.

Thread safety: an engine computes in buffers it owns, so two calls must never share one. An op
call takes an idle engine of its family (shape, device, input dtype, backend, options) whose
row capacity is at least its N, or binds a new one, and gives it back when it returns: calls
from any number of threads get the results of serial calls, and the pool holds as many engines
of a family as calls ran at once (the ``MAX_ENGINES`` idle ones used last are kept).

Row capacity: a new engine is bound for N rounded up to an eighth of its octave (at most 12.5 %
more rows), and serves every later call of at most that many rows, so minibatches of varying
size reuse one engine instead of binding one per N.

Modes: engines and their optimizer states are bound with inference mode and autocast off, so
a first call under ``torch.inference_mode()`` leaves no inference tensor behind for later
calls to update in place. An engine is never bound from a tracing context (a FakeTensor, a
meta tensor, a functional or functorch-wrapped tensor, or an active fake or functional mode):
a buffer made there would be fake, and every later call would compute in it. The ops trace
through their fake implementations instead, which bind nothing.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from typing import TypeVar

import torch

from ..backends import bind, requested_backend
from ..backends.base import Options
from ..backends.engine import Engine
from ..block import BlockShape
from ..errors import MGDLError

__all__ = [
    "MAX_ENGINES", "TracingError", "cached_engines", "capacity", "clean_mode", "clear_engines",
    "engine_for",
]  # fmt: skip

MAX_ENGINES = 8
_MODES = (torch._C._TorchDispatchModeKey.FAKE, torch._C._TorchDispatchModeKey.FUNCTIONAL)
T = TypeVar("T")


class TracingError(MGDLError, RuntimeError):
    """An engine was asked for from a tracing context (see the module docstring)."""


class _Pool:
    """Idle engines by family, least recently given back first; a lock guards the list only
    (binding and computing happen outside it)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.idle: list[tuple[tuple, Engine]] = []

    def take(self, family: tuple, rows: int) -> Engine | None:
        """The idle engine of ``family`` with the smallest capacity >= ``rows``, removed."""
        with self.lock:
            fits = [i for i, (f, e) in enumerate(self.idle) if f == family and e.rows >= rows]
            if not fits:
                return None
            best = min(fits, key=lambda i: self.idle[i][1].rows)
            return self.idle.pop(best)[1]

    def give_back(self, family: tuple, engine: Engine) -> None:
        with self.lock:
            self.idle.append((family, engine))
            del self.idle[: max(0, len(self.idle) - MAX_ENGINES)]


_pool = _Pool()


def _tracing_reason(t: torch.Tensor) -> str | None:
    # Imported here, not at the top: importing mgdl_fast loads no private torch module.
    from torch._subclasses.fake_tensor import FakeTensor

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


def capacity(rows: int) -> int:
    """The row capacity an engine for ``rows`` rows is bound for: ``rows`` rounded up to a
    multiple of 2^(bits - 4) (an eighth of its octave; ``rows`` itself below 16)."""
    step = 1 << max(0, rows.bit_length() - 4)
    return -(-rows // step) * step


def clean_mode(fn: Callable[[], T], device: torch.device) -> T:
    """``fn()`` with inference mode and autocast off: what it allocates are normal tensors
    that later calls in any mode may update in place."""
    with contextlib.ExitStack() as stack:
        if torch.is_inference_mode_enabled():
            stack.enter_context(torch.inference_mode(False))
        if torch.is_autocast_enabled(device.type):
            stack.enter_context(torch.autocast(device.type, enabled=False))
        return fn()


def _bind(shape: BlockShape, x: torch.Tensor, rows: int, options: Options, name: str) -> Engine:
    return bind(shape, device=x.device, rows=rows, input_dtype=x.dtype, options=options,
                backend=name)  # fmt: skip


@contextlib.contextmanager
def engine_for(
    op: str,
    shape: BlockShape,
    x: torch.Tensor,
    *,
    rows: int | None = None,
    backend: str | None = None,
    precision: str | None = None,
    deterministic: bool | None = None,
) -> Iterator[Engine]:
    """``with engine_for(...) as engine``: an engine serving op ``op`` on ``x`` (its device
    and dtype; ``rows`` default ``x.shape[0]``), lent to this call alone and planned for
    ``rows``. ``backend``, ``precision`` and ``deterministic`` None mean the environment's
    (``$MGDL_FAST_BACKEND``, ...) as read now. Raises TracingError for a tensor from a
    tracing context."""
    why = _tracing_reason(x)
    if why is not None:
        raise TracingError(
            f"mgdl_fast::{op} got {why}: engines bind only for real tensors (call the "
            "torch.ops.mgdl_fast ops under tracing; they trace through their fake kernels)"
        )
    options = Options.from_env(precision, deterministic)
    name = requested_backend(backend)
    rows = x.shape[0] if rows is None else rows
    family = (shape, x.device, x.dtype, name, options)
    engine = _pool.take(family, rows)
    if engine is None:
        engine = clean_mode(lambda: _bind(shape, x, capacity(rows), options, name), x.device)
    try:
        # Per-N plans and constants are made lazily: in the clean mode too.
        clean_mode(lambda: engine.prepare(rows), x.device)
        yield engine
    finally:
        _pool.give_back(family, engine)


def cached_engines() -> list[Engine]:
    """The idle engines kept for the next calls, least recently used first."""
    with _pool.lock:
        return [engine for _, engine in _pool.idle]


def clear_engines() -> None:
    """Drop every idle engine (their buffers are freed with them); engines lent to running
    calls join the pool when those calls end."""
    with _pool.lock:
        _pool.idle.clear()

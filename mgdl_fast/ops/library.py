"""The block's ops as ``torch.library`` custom ops in the ``mgdl_fast`` namespace.

Each op checks its operands with the checks every backend shares (one ``InputError`` per
problem, in the real and the fake kernel alike), then runs on an engine of its shape, device
and input dtype with room for its rows, lent to that call alone (engines.py: thread-safe, any
mode). Outputs are fresh tensors; engine buffers never leave an op. ``shape`` is
``[D, W, L, C]`` (``BlockShape``'s fields in order); ``backend``, ``precision`` and
``deterministic`` None mean the environment's, read when the op runs, so a traced graph keeps
them as constants and picks the backend at run time.

Dtype policy: ``x`` is fp32 (coordinates) or bf16 (cached features); targets, gradients of the
output, parameters and optimizer state are fp32 (the step counter fp64); every output is fp32
except ``features`` (``features_dtype``: fp32 or bf16).

Ops (autograd in autograd.py, vmap rules in vmap.py):
  block_fwd(x, params, shape, ...) -> out [N, C]
  block_fwd_features(x, params, shape, features_dtype, ...) -> (out [N, C], features [N, W])
  block_bwd(x, params, grad_out, shape, input_grad, ...) -> [grad_params [P]] (+ grad_x [N, D])
  grade_step(x, y, params, shape, ...) -> (loss [], grad_params [P])  (0.5 * mean((out - y)^2))
  adam_step(params, grad, exp_avg, exp_avg_sq, step, shape, lr, beta1, beta2, eps, backend)
  gd_step(params, grad, shape, lr, backend)  (both update their tensors in place)
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence

import torch
from torch import Tensor

from ..backends.base import INPUT_DTYPES, check_params, check_tensor, dtype_name
from ..backends.engine import Engine, OptimState
from ..block import BlockShape
from ..errors import InputError
from .engines import clean_mode, engine_for

__all__ = [
    "adam_step", "block_bwd", "block_fwd", "block_fwd_features", "block_shape", "dims",
    "gd_step", "grade_step",
]  # fmt: skip

F32 = (torch.float32,)


def block_shape(shape: Sequence[int]) -> BlockShape:
    """The ``BlockShape`` of an op's ``shape`` argument ``[D, W, L, C]``."""
    if len(shape) != 4:
        raise InputError(f"shape must be [D, W, L, C], got {list(shape)}")
    return BlockShape(*(int(s) for s in shape))


def dims(shape: BlockShape) -> list[int]:
    """An op's ``shape`` argument ``[D, W, L, C]`` for a ``BlockShape``."""
    return [shape.in_dim, shape.width, shape.hidden_layers, shape.out_dim]


def check_block(x: Tensor, params: Tensor, shape: Sequence[int]) -> BlockShape:
    """The shared checks of ``x [N, D]`` and ``params [P]`` for a block of ``shape``."""
    s = block_shape(shape)
    check_tensor("x", x, rows=None, cols=s.in_dim, dtypes=INPUT_DTYPES, device=x.device)
    check_params(params, s, x.device)
    return s


def _rows(name: str, t: Tensor, x: Tensor, cols: int) -> None:
    check_tensor(name, t, rows=x.shape[0], cols=cols, dtypes=F32, device=x.device)


@torch.library.custom_op("mgdl_fast::block_fwd", mutates_args=())
def block_fwd(
    x: Tensor,
    params: Tensor,
    shape: list[int],
    backend: str | None = None,
    precision: str | None = None,
    deterministic: bool | None = None,
) -> Tensor:
    """The block output ``[N, C]`` fp32 of ``x [N, D]`` at ``params [P]``."""
    s = check_block(x, params, shape)
    out = torch.empty(x.shape[0], s.out_dim, device=x.device)
    with engine_for("block_fwd", s, x, backend=backend, precision=precision,
                    deterministic=deterministic) as engine:  # fmt: skip
        engine.forward(x, params, out)
    return out


@block_fwd.register_fake
def _(x, params, shape, backend=None, precision=None, deterministic=None):
    s = check_block(x, params, shape)
    return x.new_empty(x.shape[0], s.out_dim, dtype=torch.float32)


def _features_dtype(dtype: torch.dtype) -> None:
    if dtype not in INPUT_DTYPES:
        raise InputError(f"features dtype {dtype_name(dtype)} is not float32 or bfloat16")


@torch.library.custom_op("mgdl_fast::block_fwd_features", mutates_args=())
def block_fwd_features(
    x: Tensor,
    params: Tensor,
    shape: list[int],
    features_dtype: torch.dtype = torch.float32,
    backend: str | None = None,
    precision: str | None = None,
    deterministic: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """The output ``[N, C]`` fp32 and the last hidden layer ``[N, W]`` (``features_dtype``:
    the next grade's inputs) of ``x [N, D]``."""
    s = check_block(x, params, shape)
    _features_dtype(features_dtype)
    out = torch.empty(x.shape[0], s.out_dim, device=x.device)
    features = torch.empty(x.shape[0], s.width, dtype=features_dtype, device=x.device)
    with engine_for("block_fwd_features", s, x, backend=backend, precision=precision,
                    deterministic=deterministic) as engine:  # fmt: skip
        engine.forward(x, params, out, features)
    return out, features


@block_fwd_features.register_fake
def _(x, params, shape, features_dtype=torch.float32, backend=None, precision=None,
      deterministic=None):  # fmt: skip
    s = check_block(x, params, shape)
    _features_dtype(features_dtype)
    out = x.new_empty(x.shape[0], s.out_dim, dtype=torch.float32)
    return out, x.new_empty(x.shape[0], s.width, dtype=features_dtype)


@torch.library.custom_op("mgdl_fast::block_bwd", mutates_args=())
def block_bwd(
    x: Tensor,
    params: Tensor,
    grad_out: Tensor,
    shape: list[int],
    input_grad: bool,
    backend: str | None,
    precision: str | None,
    deterministic: bool | None,
) -> list[Tensor]:
    """``[dL/dparams [P]]``, and ``dL/dx [N, D]`` fp32 after it when ``input_grad``, from
    ``grad_out = dL/dout [N, C]`` fp32 (the forward is recomputed, not stored).

    Every argument is required: the dispatcher drops arguments equal to their defaults, and
    the autograd of an op returning a list needs the gradients of exactly those it got."""
    s = check_block(x, params, shape)
    _rows("grad_out", grad_out, x, s.out_dim)
    grad = torch.empty_like(params)
    grad_x = torch.empty(x.shape, device=x.device) if input_grad else None
    with engine_for("block_bwd", s, x, backend=backend, precision=precision,
                    deterministic=deterministic) as engine:  # fmt: skip
        engine.backward(x, params, grad_out, grad, grad_x)
    return [grad] if grad_x is None else [grad, grad_x]


@block_bwd.register_fake
def _(x, params, grad_out, shape, input_grad, backend, precision, deterministic):
    s = check_block(x, params, shape)
    _rows("grad_out", grad_out, x, s.out_dim)
    grad = torch.empty_like(params)
    return [grad, x.new_empty(x.shape, dtype=torch.float32)] if input_grad else [grad]


@torch.library.custom_op("mgdl_fast::grade_step", mutates_args=())
def grade_step(
    x: Tensor,
    y: Tensor,
    params: Tensor,
    shape: list[int],
    backend: str | None = None,
    precision: str | None = None,
    deterministic: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """One full-batch training step: the loss ``0.5 * mean((block(x) - y)^2)`` (0-dim fp32)
    and its gradient ``[P]`` fp32, for ``x [N, D]`` and targets ``y [N, C]`` fp32."""
    s = check_block(x, params, shape)
    _rows("y", y, x, s.out_dim)
    grad = torch.empty_like(params)
    with engine_for("grade_step", s, x, backend=backend, precision=precision,
                    deterministic=deterministic) as engine:  # fmt: skip
        # The engine owns its loss tensor (the next step overwrites it): the op returns a copy.
        return engine.step(x, y, params, grad).clone(), grad


@grade_step.register_fake
def _(x, y, params, shape, backend=None, precision=None, deterministic=None):
    s = check_block(x, params, shape)
    _rows("y", y, x, s.out_dim)
    return params.new_empty(()), torch.empty_like(params)


# One optimizer state per engine and hyperparameters, its tensors swapped for the caller's on
# every call: the state's constants and scratch are made once, not per step. A state is used
# only by the call holding its engine; the lock guards the dictionary.
_states: weakref.WeakKeyDictionary[Engine, dict[tuple, OptimState]] = weakref.WeakKeyDictionary()
_states_lock = threading.Lock()


def _check_update(params: Tensor, grad: Tensor, shape: Sequence[int]) -> BlockShape:
    """The shared checks of an optimizer step's ``params`` and ``grad`` ``[P]`` fp32."""
    s = block_shape(shape)
    check_params(params, s, params.device)
    _check_state("grad", grad, params, tuple(params.shape), torch.float32)
    return s


def _optimizer_engine(op: str, params: Tensor, grad: Tensor, shape, backend):
    """``with``: the engine whose update serves ``op`` (bound for one row: updates read no
    inputs)."""
    return engine_for(op, _check_update(params, grad, shape), params, rows=1, backend=backend)


def _state(engine: Engine, kind: str, lr: float, numel: int, **hyper: float) -> OptimState:
    """The kept state of ``kind`` for this engine and ``hyper``, at learning rate ``lr`` (made
    in the clean mode: its scalars are updated in place by every later call)."""
    key = (kind, numel, *sorted(hyper.items()))
    with _states_lock:
        state = _states.setdefault(engine, {}).get(key)
    if state is None:
        state = clean_mode(lambda: engine.optimizer_state(kind, lr, numel, **hyper), engine.device)
        with _states_lock:
            _states[engine][key] = state
    state.lr = lr
    return state


def _check_state(name: str, t: Tensor, params: Tensor, shape: tuple, dtype: torch.dtype) -> None:
    if not isinstance(t, Tensor) or tuple(t.shape) != shape or t.dtype != dtype:
        got = (
            f"{list(t.shape)} {dtype_name(t.dtype)}" if isinstance(t, Tensor) else type(t).__name__
        )
        raise InputError(f"{name} must be {list(shape)} {dtype_name(dtype)}, got {got}")
    if t.device != params.device:
        raise InputError(f"{name} is on {t.device} but the parameters are on {params.device}")


def _check_adam(params, grad, exp_avg, exp_avg_sq, step) -> None:
    for name, t in (("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        _check_state(name, t, params, tuple(params.shape), torch.float32)
    _check_state("step", step, params, (), torch.float64)


@torch.library.custom_op(
    "mgdl_fast::adam_step", mutates_args=("params", "exp_avg", "exp_avg_sq", "step")
)
def adam_step(
    params: Tensor,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: Tensor,
    shape: list[int],
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    backend: str | None = None,
) -> None:
    """One bias-corrected Adam step in place (as jax.example_libraries.optimizers.adam):
    ``step`` (0-dim fp64, steps done so far) += 1, then the moments ``exp_avg``/``exp_avg_sq``
    ``[P]`` fp32 and ``params [P]`` fp32 are updated from ``grad [P]``."""
    with _optimizer_engine("adam_step", params, grad, shape, backend) as engine:
        _check_adam(params, grad, exp_avg, exp_avg_sq, step)
        state = _state(engine, "adam", lr, params.numel(), beta1=beta1, beta2=beta2, eps=eps)
        state.exp_avg, state.exp_avg_sq, state.step = exp_avg, exp_avg_sq, step
        engine.update(params, grad, state)


@adam_step.register_fake
def _(params, grad, exp_avg, exp_avg_sq, step, shape, lr, beta1=0.9, beta2=0.999, eps=1e-8,
      backend=None):  # fmt: skip
    _check_update(params, grad, shape)
    _check_adam(params, grad, exp_avg, exp_avg_sq, step)


@torch.library.custom_op("mgdl_fast::gd_step", mutates_args=("params",))
def gd_step(
    params: Tensor, grad: Tensor, shape: list[int], lr: float, backend: str | None = None
) -> None:
    """Plain gradient descent in place: ``params -= lr * grad`` (both ``[P]`` fp32)."""
    with _optimizer_engine("gd_step", params, grad, shape, backend) as engine:
        engine.update(params, grad, _state(engine, "gd", lr, params.numel()))


@gd_step.register_fake
def _(params, grad, shape, lr, backend=None):
    _check_update(params, grad, shape)

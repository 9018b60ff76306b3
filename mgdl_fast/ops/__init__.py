"""A grade's block as differentiable ops over any backend, for front ends to build on.

The ops are ``torch.library`` custom ops, ``torch.ops.mgdl_fast.{block_fwd,
block_fwd_features, block_bwd, grade_step, adam_step, gd_step}`` (library.py), each with a fake
kernel, an autograd formula and a batching rule, running on an engine of its shape, device and
dtype lent to the call alone (engines.py: calls from any number of threads give the results of
serial calls, in any grad, inference or autocast mode). The functions here are what to call:

- ``block_forward`` (and ``block_backward``, ``grade_step``): in eager mode they run as
  ``torch.autograd.Function``s that every ``torch.func`` transform composes with (grad, vjp,
  jvp, jacrev, vmap, hessian); under torch.compile, torch.export or torch.func.functionalize
  they call the custom ops directly, so a graph holds one node per op with a dynamic N and no
  graph break.
- ``adam_step`` / ``gd_step``: the optimizer updates of the engines, in place.

Gradients: the first backward of ``block_forward`` runs on the engine; double backward,
forward-mode tangents and the gradients through ``return_features`` and ``grade_step`` use the
torch formulas of the specification (formulas.py). Bad operands get one-line ``InputError``s
with the dtype policy of library.py.
"""

from __future__ import annotations

from typing import Protocol

import torch
from torch import Tensor

from ..backends.base import INPUT_DTYPES, check_params, check_tensor
from ..block import BlockShape
from ..errors import InputError
from . import autograd as _autograd  # noqa: F401 (registers the autograd formulas)
from . import library
from . import vmap as _vmap  # noqa: F401 (registers the batching rules)
from .engines import TracingError, cached_engines, clear_engines
from .functions import BlockBackward, BlockFeatures, BlockForward, GradeStep
from .library import dims

__all__ = [
    "BlockLike",
    "TracingError",
    "adam_step",
    "block_backward",
    "block_forward",
    "cached_engines",
    "clear_engines",
    "gd_step",
    "grade_step",
]


class BlockLike(Protocol):
    """What the functions take as ``params``: ``BlockParams``, ``mgdl_fast.nn.Grade``, or
    anything else holding a flat ``[P]`` fp32 vector and its ``BlockShape``."""

    @property
    def flat(self) -> Tensor: ...

    @property
    def shape(self) -> BlockShape: ...


def _use_ops() -> bool:
    """Call the custom ops directly rather than through the Functions: under torch.compile and
    torch.export (Dynamo cannot trace a Function with a jvp), and under
    torch.func.functionalize (which cannot run a Function)."""
    if torch.compiler.is_compiling():
        return True
    if not torch._C._are_functorch_transforms_active():
        return False
    from torch._functorch.pyfunctorch import retrieve_all_functorch_interpreters

    functionalize = torch._C._functorch.TransformType.Functionalize
    return any(i.key() == functionalize for i in retrieve_all_functorch_interpreters())


def _unpack(params: object) -> tuple[Tensor, BlockShape]:
    """``(flat, shape)`` of ``BlockParams`` or of anything holding ``flat`` and a
    ``BlockShape`` ``shape`` (``mgdl_fast.nn.Grade``)."""
    shape = getattr(params, "shape", None)
    if not isinstance(shape, BlockShape) or not hasattr(params, "flat"):
        raise InputError(
            f"params must be BlockParams (or hold flat and a BlockShape), got "
            f"{type(params).__name__}"
        )
    return params.flat, shape


def _inputs(x: object, params: object) -> tuple[Tensor, Tensor, BlockShape]:
    """``x`` made contiguous, the flat parameters and the shape, after the shared checks."""
    flat, shape = _unpack(params)
    if isinstance(x, Tensor):
        x = x.contiguous()
    check_tensor("x", x, rows=None, cols=shape.in_dim, dtypes=INPUT_DTYPES, device=flat.device)
    check_params(flat, shape, flat.device)
    assert isinstance(x, Tensor)
    return x, flat, shape


def block_forward(
    x: Tensor,
    params: BlockLike,
    *,
    return_features: bool = False,
    features_dtype: torch.dtype = torch.float32,
    backend: str | None = None,
    precision: str | None = None,
    deterministic: bool | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Block output ``[N, C]`` fp32 for ``x [N, D]`` (fp32, or bf16 cached features),
    differentiable w.r.t. ``x`` and ``params.flat`` (fp32 ``[P]``); with ``return_features``
    also the last hidden layer ``[N, W]`` in ``features_dtype`` (fp32 or bf16).

    Runs on ``backend`` (default ``$MGDL_FAST_BACKEND``, else auto) with ``precision`` and
    ``deterministic`` (default from the environment); the backward recomputes the forward
    rather than storing activations.
    """
    x, flat, shape = _inputs(x, params)
    config = (backend, precision, deterministic)
    if _use_ops():
        if return_features:
            return library.block_fwd_features(x, flat, dims(shape), features_dtype, *config)
        return library.block_fwd(x, flat, dims(shape), *config)
    if return_features:
        return BlockFeatures.apply(x, flat, shape, features_dtype, *config)
    return BlockForward.apply(x, flat, shape, *config)


def block_backward(
    x: Tensor,
    params: BlockLike,
    grad_out: Tensor,
    *,
    input_grad: bool = False,
    backend: str | None = None,
    precision: str | None = None,
    deterministic: bool | None = None,
) -> tuple[Tensor, Tensor | None]:
    """``(dL/dparams [P], dL/dx [N, D] fp32 or None)`` from ``grad_out = dL/dout [N, C]``
    fp32, on the engine (the forward is recomputed); differentiable (torch formulas)."""
    x, flat, shape = _inputs(x, params)
    grad_out = grad_out.contiguous() if isinstance(grad_out, Tensor) else grad_out
    check_tensor("grad_out", grad_out, rows=x.shape[0], cols=shape.out_dim,
                 dtypes=(torch.float32,), device=flat.device)  # fmt: skip
    config = (backend, precision, deterministic)
    if _use_ops():
        grads = tuple(library.block_bwd(x, flat, grad_out, dims(shape), input_grad, *config))
    else:
        grads = BlockBackward.apply(x, flat, grad_out, shape, input_grad, *config)
    return grads[0], (grads[1] if input_grad else None)


def grade_step(
    x: Tensor,
    y: Tensor,
    params: BlockLike,
    *,
    backend: str | None = None,
    precision: str | None = None,
    deterministic: bool | None = None,
) -> tuple[Tensor, Tensor]:
    """One fused full-batch step of ``0.5 * mean((block(x) - y)^2)``: ``(loss, grad)``, the
    loss 0-dim fp32 and its gradient ``[P]`` fp32, for ``x [N, D]`` and ``y [N, C]`` fp32."""
    x, flat, shape = _inputs(x, params)
    y = y.contiguous() if isinstance(y, Tensor) else y
    check_tensor("y", y, rows=x.shape[0], cols=shape.out_dim, dtypes=(torch.float32,),
                 device=flat.device)  # fmt: skip
    config = (backend, precision, deterministic)
    if _use_ops():
        return library.grade_step(x, y, flat, dims(shape), *config)
    return GradeStep.apply(x, y, flat, shape, *config)


def adam_step(
    params: BlockLike,
    grad: Tensor,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: Tensor,
    *,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    backend: str | None = None,
) -> None:
    """One Adam step on the engine, in place: ``step`` (0-dim fp64, steps so far; start at
    0) += 1, the moments ``exp_avg``/``exp_avg_sq`` ``[P]`` fp32 (start at 0) and
    ``params.flat`` from ``grad [P]`` fp32 (bias-corrected, as
    jax.example_libraries.optimizers.adam)."""
    flat, shape = _unpack(params)
    library.adam_step(
        flat, grad, exp_avg, exp_avg_sq, step, dims(shape), lr, beta1, beta2, eps, backend
    )


def gd_step(params: BlockLike, grad: Tensor, *, lr: float, backend: str | None = None) -> None:
    """``params.flat -= lr * grad`` on the engine, in place."""
    flat, shape = _unpack(params)
    library.gd_step(flat, grad, dims(shape), lr, backend)

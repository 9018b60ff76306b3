"""JAX interop: arrays in and out by DLPack without copies, the block forward as a
``jax.custom_vjp`` function over the engines, and a grade fitted from JAX arrays.

Importing this module imports JAX (``import mgdl_fast`` does not). ``to_torch`` and
``from_torch`` share memory (a torch view of a JAX array must not be written: JAX arrays are
immutable). ``block_forward`` and its backward run through ``jax.experimental.buffer_callback``,
eagerly and under ``jax.jit``, ``jax.grad`` and ``jax.vmap`` alike: the callback gets XLA's
device buffers, wraps them by DLPack (no copy), and runs the engine of that device on them,
writing the outputs into XLA's output buffers; on CUDA on XLA's stream. ``jax.vmap`` runs one
call per batch element. Dtypes follow the torch policy (``mgdl_fast.DTYPE_POLICY``): fp32 (or
bf16) inputs, fp32 parameters, fp32 outputs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import torch
from jax.experimental.buffer_callback import ExecutionStage, buffer_callback

from .backends import bind
from .block import BlockParams, BlockShape
from .ops import library
from .ops.engines import engine_for
from .ops.library import dims

__all__ = ["block_forward", "fit_grade", "from_torch", "to_torch"]


def to_torch(array) -> torch.Tensor:
    """A torch tensor sharing ``array``'s memory (any DLPack producer: JAX, NumPy, CuPy)."""
    return torch.from_dlpack(array)


def from_torch(tensor: torch.Tensor) -> jax.Array:
    """A JAX array sharing ``tensor``'s memory (detached; made contiguous first if needed)."""
    return jax.dlpack.from_dlpack(tensor.detach().contiguous())


def _on_device(fn: Callable, outputs: tuple[jax.ShapeDtypeStruct, ...], *arrays) -> tuple:
    """``fn(outs, *ins)`` (torch tensors, writing ``outs`` in place) on JAX arrays, concrete
    or traced, through ``buffer_callback``: XLA's own buffers reach ``fn`` by DLPack on the
    device that holds them, the outputs are written where XLA reads them (no host copy, no
    output copy), and on CUDA the engine runs on XLA's stream."""

    def callback(ctx, outs, *ins) -> None:
        if ctx.stage != ExecutionStage.EXECUTE:
            return
        tensors = [torch.from_dlpack(b) for b in (*outs, *ins)]
        device = tensors[0].device
        stream = (
            torch.cuda.stream(torch.cuda.ExternalStream(ctx.stream, device=device))
            if device.type == "cuda"
            else contextlib.nullcontext()
        )
        with stream:
            fn(tensors[: len(outs)], *tensors[len(outs) :])

    call = buffer_callback(callback, outputs, vmap_method="sequential")
    return tuple(call(*arrays))


def _forward(x, flat, shape: BlockShape, backend: str | None):
    def fn(outs, x, flat):
        s = library.check_block(x, flat, dims(shape))
        with engine_for("block_fwd", s, x, backend=backend) as engine:
            engine.forward(x, flat, outs[0])

    out = jax.ShapeDtypeStruct((x.shape[0], shape.out_dim), jnp.float32)
    return _on_device(fn, (out,), x, flat)[0]


@partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def block_forward(x, flat, shape: BlockShape, backend: str | None = None) -> jax.Array:
    """Block output ``[N, C]`` fp32 for ``x [N, D]`` at ``flat [P]`` (JAX arrays; the
    ``BlockParams`` layout), differentiable w.r.t. ``x`` and ``flat`` with the engine's
    backward. ``shape`` and ``backend`` are static."""
    return _forward(x, flat, shape, backend)


def _block_fwd(x, flat, shape, backend):
    return _forward(x, flat, shape, backend), (x, flat)


def _block_bwd(shape, backend, saved, grad_out):
    x, flat = saved

    def fn(outs, x, flat, grad_out):
        grad_x, grad_flat = outs
        s = library.check_block(x, flat, dims(shape))
        # The engine writes dL/dx in fp32: bf16 inputs get theirs through an fp32 copy.
        fp32 = (
            grad_x
            if grad_x.dtype == torch.float32
            else grad_x.new_empty(grad_x.shape, dtype=torch.float32)
        )
        with engine_for("block_bwd", s, x, backend=backend) as engine:
            engine.backward(x, flat, grad_out, grad_flat, fp32)
        if fp32 is not grad_x:
            grad_x.copy_(fp32)

    specs = (jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(flat.shape, flat.dtype))
    return _on_device(fn, specs, x, flat, grad_out)


block_forward.defvjp(_block_fwd, _block_bwd)


def fit_grade(
    x,
    y,
    shape: BlockShape,
    *,
    epochs: int,
    lr: float,
    flat=None,
    seed: int = 0,
    optimizer: str = "adam",
    backend: str | None = None,
) -> tuple[jax.Array, jax.Array]:
    """Fit one grade to ``0.5 * mean((block(x) - y)^2)`` by full-batch steps on the engine
    of ``x``'s device: ``x [N, D]`` and ``y [N, C]`` JAX arrays, parameters from ``flat [P]``
    (else ``BlockParams.init(shape, seed)``). Returns the trained ``flat [P]`` and the loss
    before each step ``[epochs]``, both JAX arrays."""
    x_t, y_t = to_torch(x), to_torch(y)
    if flat is None:
        params = BlockParams.init(shape, seed=seed, device=x_t.device)
    else:
        params = BlockParams(shape, to_torch(flat).clone())
    engine = bind(shape, device=x_t.device, rows=x_t.shape[0], input_dtype=x_t.dtype,
                  backend=backend)  # fmt: skip
    engine.validate(x_t, params.flat, targets=y_t)
    grad = torch.empty_like(params.flat)
    state = engine.optimizer_state(optimizer, lr, params.flat.numel())
    losses = torch.empty(epochs, device=x_t.device)
    for epoch in range(epochs):
        losses[epoch] = engine.step(x_t, y_t, params.flat, grad)
        engine.update(params.flat, grad, state)
    return from_torch(params.flat), from_torch(losses)

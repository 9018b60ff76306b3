"""JAX interop: arrays in and out by DLPack without copies, the block forward as a
``jax.custom_vjp`` function over the engines, and a grade fitted from JAX arrays.

Importing this module imports JAX (``import mgdl_fast`` does not). ``to_torch`` and
``from_torch`` share memory (a torch view of a JAX array must not be written: JAX arrays are
immutable). ``block_forward`` runs the engine of the arrays' device on concrete arrays; under
``jax.jit``, ``jax.grad`` or ``jax.vmap`` it runs the same op through ``jax.pure_callback`` on
host copies (JAX hands callbacks NumPy arrays), so it composes with every JAX transform on CPU.
Dtypes follow the torch policy (``mgdl_fast.DTYPE_POLICY``): fp32 (or bf16) inputs, fp32
parameters, fp32 outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import torch

from .backends import bind
from .block import BlockParams, BlockShape
from .ops import library
from .ops.library import dims

__all__ = ["block_forward", "fit_grade", "from_torch", "to_torch"]


def to_torch(array) -> torch.Tensor:
    """A torch tensor sharing ``array``'s memory (any DLPack producer: JAX, NumPy, CuPy)."""
    return torch.from_dlpack(array)


def from_torch(tensor: torch.Tensor) -> jax.Array:
    """A JAX array sharing ``tensor``'s memory (detached; made contiguous first if needed)."""
    return jax.dlpack.from_dlpack(tensor.detach().contiguous())


def _host(array) -> torch.Tensor:
    """A callback's argument (a host JAX array, or a NumPy array in older JAX) as a tensor;
    read-only NumPy arrays, which DLPack cannot export, are copied."""
    if not isinstance(array, np.ndarray):
        return to_torch(array)
    if array.dtype == jnp.bfloat16:
        return torch.from_numpy(array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_dlpack(array) if array.flags.writeable else torch.tensor(array)


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    if tensor.dtype == torch.bfloat16:
        return tensor.view(torch.int16).numpy().view(jnp.bfloat16)
    return tensor.numpy()


def _run(fn: Callable, outputs: tuple[jax.ShapeDtypeStruct, ...], *arrays) -> tuple:
    """``fn`` (torch tensors in, a tuple of torch tensors out) on JAX arrays: by DLPack on
    concrete arrays, through ``jax.pure_callback`` on traced ones."""
    if not any(isinstance(a, jax.core.Tracer) for a in arrays):
        return tuple(from_torch(t) for t in fn(*(to_torch(a) for a in arrays)))

    def callback(*host):
        return tuple(_numpy(t) for t in fn(*(_host(a) for a in host)))

    return jax.pure_callback(callback, outputs, *arrays, vmap_method="sequential")


def _forward(x, flat, shape: BlockShape, backend: str | None):
    def fn(x, flat):
        return (library.block_fwd(x.contiguous(), flat.contiguous(), dims(shape), backend),)

    out = jax.ShapeDtypeStruct((x.shape[0], shape.out_dim), jnp.float32)
    return _run(fn, (out,), x, flat)[0]


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

    def fn(x, flat, grad_out):
        grads = library.block_bwd(x.contiguous(), flat.contiguous(), grad_out.contiguous(),
                                  dims(shape), True, backend, None, None)  # fmt: skip
        return grads[1].to(x.dtype), grads[0]

    specs = (jax.ShapeDtypeStruct(x.shape, x.dtype), jax.ShapeDtypeStruct(flat.shape, flat.dtype))
    grad_x, grad_flat = _run(fn, specs, x, flat, grad_out)
    return grad_x, grad_flat


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

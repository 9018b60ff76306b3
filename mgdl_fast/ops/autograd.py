"""Autograd of the custom ops (``register_autograd``): what torch.compile, torch.export and
direct ``torch.ops.mgdl_fast`` calls differentiate through; functions.py reuses the bodies.

``block_fwd``'s backward is the engine's (``block_bwd``); everything of a higher order, and the
gradients through ``block_fwd_features``'s features and through ``grade_step``, are the torch
formulas of formulas.py, so double backward works on every backend. The optimizer steps update
in place and are not differentiable. Under torch.func's grad- and jvp-type transforms and
forward-mode AD the raw ops raise one ``InputError`` naming the functions that serve them
(functions.py: ``mgdl_fast.block_forward`` and the others).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
from torch import Tensor
from torch.autograd import forward_ad

from ..block import BlockShape
from ..errors import InputError
from . import formulas, library
from .library import block_shape, dims

_log = logging.getLogger("mgdl_fast")

# The engine backward: (x, params, grad_out, shape, input_grad, *config) -> [grad, (grad_x)].
Backward = Callable[..., "list[Tensor] | tuple[Tensor, ...]"]


def block_grads(bwd: Backward, ctx, x: Tensor, params: Tensor, grad_out: Tensor | None):
    """``(dL/dx or None, dL/dparams)`` of ``block_fwd`` from the engine's backward ``bwd``
    (``ctx``: ``shape``, ``config``, ``needs_input_grad``)."""
    if grad_out is None:
        return None, None
    needs_x = ctx.needs_input_grad[0]
    grads = bwd(x, params, grad_out.float().contiguous(), ctx.shape, needs_x, *ctx.config)
    return (grads[1].to(x.dtype) if needs_x else None), grads[0]


def features_grads(bwd: Backward, ctx, x, params, grad_out, grad_features):
    """``(dL/dx, dL/dparams)`` of ``block_fwd_features``: the engine's when the features got
    no gradient, else the torch formulas."""
    if grad_features is None:
        return block_grads(bwd, ctx, x, params, grad_out)
    return formulas.features_vjp(x, params, ctx.shape, grad_out, grad_features)


def step_grads(ctx, x, y, params, grad, grad_loss, grad_grad):
    """``(dL/dx, dL/dy, dL/dparams)`` of ``grade_step``: ``grad_loss * grad`` for the
    parameters alone, the torch formulas for anything else."""
    if grad_grad is None and not any(ctx.needs_input_grad[:2]):
        return None, None, None if grad_loss is None else grad_loss * grad
    return formulas.grade_step_vjp(x, y, params, ctx.shape, grad_loss, grad_grad)


def save_block(ctx, x: Tensor, params: Tensor, shape: BlockShape, config: tuple) -> None:
    ctx.save_for_backward(x, params)
    ctx.shape, ctx.config = shape, config
    # Unused outputs get None rather than zeros: a features output nobody used keeps the
    # engine's backward.
    ctx.set_materialize_grads(False)


def _op_bwd(x, params, grad_out, shape: BlockShape, input_grad, *config):
    return library.block_bwd(x, params, grad_out, dims(shape), input_grad, *config)


def _setup_fwd(ctx, inputs, output) -> None:
    x, params, shape, *config = inputs
    save_block(ctx, x, params, block_shape(shape), tuple(config))


def _fwd_backward(ctx, grad_out):
    return *block_grads(_op_bwd, ctx, *ctx.saved_tensors, grad_out), None, None, None, None


def _setup_features(ctx, inputs, output) -> None:
    x, params, shape, _, *config = inputs
    save_block(ctx, x, params, block_shape(shape), tuple(config))


def _features_backward(ctx, grad_out, grad_features):
    grads = features_grads(_op_bwd, ctx, *ctx.saved_tensors, grad_out, grad_features)
    return *grads, None, None, None, None, None


def _setup_bwd(ctx, inputs, output) -> None:
    x, params, grad_out, shape, input_grad, *_ = inputs
    ctx.save_for_backward(x, params, grad_out)
    ctx.shape, ctx.input_grad = block_shape(shape), input_grad
    ctx.set_materialize_grads(False)


def _bwd_backward(ctx, grads: list[Tensor | None]):
    gg_x = grads[1] if ctx.input_grad else None
    x, params, grad_out = ctx.saved_tensors
    dx_dp_dg = formulas.block_bwd_vjp(x, params, grad_out, ctx.shape, grads[0], gg_x)
    return *dx_dp_dg, None, None, None, None, None


def _setup_step(ctx, inputs, output) -> None:
    x, y, params, shape, *_ = inputs
    ctx.save_for_backward(x, y, params, output[1])
    ctx.shape = block_shape(shape)
    ctx.set_materialize_grads(False)


def _step_backward(ctx, grad_loss, grad_grad):
    grads = step_grads(ctx, *ctx.saved_tensors, grad_loss, grad_grad)
    return *grads, None, None, None, None


_GRAD, _JVP = torch._C._functorch.TransformType.Grad, torch._C._functorch.TransformType.Jvp


def _transform(args: tuple) -> str | None:
    """The transform a raw op cannot serve: a torch.func grad-type or jvp-type transform (torch
    runs custom ops' autograd under them as a Function without ``setup_context``, and
    forward mode not at all), or forward-mode AD with a dual input."""
    if torch._C._are_functorch_transforms_active():
        key = torch._C._functorch.peek_interpreter_stack().key()
        if key in (_GRAD, _JVP):
            return "torch.func.jvp/jacfwd" if key == _JVP else "torch.func.grad/vjp/jacrev"
    if forward_ad._current_level >= 0 and any(
        isinstance(a, Tensor) and forward_ad.unpack_dual(a).tangent is not None for a in args
    ):
        return "forward-mode AD"
    return None


def _refuse_transforms(op) -> None:
    """Give ``op`` (a custom op with its autograd registered) an Autograd kernel that raises
    one clear ``InputError`` under the transforms it cannot serve (otherwise torch says
    "must override the setup_context staticmethod", or returns a zero tangent silently) and
    runs torch's autograd kernel of the op otherwise.

    This reaches into torch's custom-op internals (tested on torch 2.11 and 2.13); on a torch
    where they differ the guard is left out, with a debug line, and the ops behave under those
    transforms as torch makes them: importing mgdl_fast must not fail for it."""
    try:
        from torch._library.autograd import make_autograd_impl

        autograd_kernel = make_autograd_impl(op._opoverload, op)
    except (ImportError, AttributeError, TypeError) as exc:
        _log.debug("no torch.func guard on the raw ops on this torch: %s", exc)
        return
    name = op._opoverload._schema.name

    def kernel(keyset, *args, **kwargs):
        transform = _transform(args)
        if transform is not None:
            raise InputError(
                f"{name} (a raw op) does not support {transform}; call "
                "mgdl_fast.block_forward / block_backward / grade_step, which do"
            )
        return autograd_kernel(keyset, *args, **kwargs)

    # allow_override: the default is True from torch 2.13, False before (the GPU machine's
    # torch 2.11 refuses to replace register_autograd's kernel without it).
    try:
        op._lib.impl(op._opoverload._schema.name.split("::")[1], kernel, "Autograd",
                     with_keyset=True, allow_override=True)  # fmt: skip
    except (RuntimeError, TypeError) as exc:
        _log.debug("no torch.func guard on the raw ops on this torch: %s", exc)


library.block_fwd.register_autograd(_fwd_backward, setup_context=_setup_fwd)
library.block_fwd_features.register_autograd(_features_backward, setup_context=_setup_features)
library.block_bwd.register_autograd(_bwd_backward, setup_context=_setup_bwd)
library.grade_step.register_autograd(_step_backward, setup_context=_setup_step)
for _op in (library.block_fwd, library.block_fwd_features, library.block_bwd, library.grade_step):
    _refuse_transforms(_op)

"""The ops as ``torch.autograd.Function``s with ``setup_context``, ``jvp`` and generated vmap
rules: what the public functions run in eager mode, so ``torch.func`` transforms (``grad``,
``vjp``, ``jacrev``, ``jacfwd``, ``jvp``, ``vmap``, ``hessian``) compose with them.

torch.func cannot transform the custom ops' own ``register_autograd`` formulas, and Dynamo
cannot trace a Function with a ``jvp``, so the public functions run these in eager mode and
the custom ops under torch.compile and torch.export (see ``mgdl_fast.ops``). The bodies are
autograd.py's: backward on the engine, higher orders and tangents by the torch formulas.
Shapes are ``BlockShape`` objects here (one pytree leaf, unlike the ops' int lists).
"""

from __future__ import annotations

import torch

from . import formulas, library
from .autograd import block_grads, features_grads, save_block, step_grads
from .library import dims


class BlockForward(torch.autograd.Function):
    """``library.block_fwd`` -> ``out [N, C]``, its backward on the engine."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, params, shape, backend, precision, deterministic):
        return library.block_fwd(x, params, dims(shape), backend, precision, deterministic)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, params, shape, *config = inputs
        save_block(ctx, x, params, shape, tuple(config))
        ctx.save_for_forward(x, params)

    @staticmethod
    def backward(ctx, grad_out):
        grads = block_grads(BlockBackward.apply, ctx, *ctx.saved_tensors, grad_out)
        return *grads, None, None, None, None

    @staticmethod
    def jvp(ctx, x_t, params_t, *_):
        x, params = ctx.saved_tensors
        return formulas.block_jvp(x, params, x_t, params_t, ctx.shape)[0]


class BlockFeatures(torch.autograd.Function):
    """``library.block_fwd_features`` -> ``(out [N, C], features [N, W])``."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, params, shape, features_dtype, backend, precision, deterministic):
        return library.block_fwd_features(
            x, params, dims(shape), features_dtype, backend, precision, deterministic
        )

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, params, shape, features_dtype, *config = inputs
        save_block(ctx, x, params, shape, tuple(config))
        ctx.save_for_forward(x, params)
        ctx.features_dtype = features_dtype

    @staticmethod
    def backward(ctx, grad_out, grad_features):
        saved = ctx.saved_tensors
        grads = features_grads(BlockBackward.apply, ctx, *saved, grad_out, grad_features)
        return *grads, None, None, None, None, None

    @staticmethod
    def jvp(ctx, x_t, params_t, *_):
        x, params = ctx.saved_tensors
        out_t, features_t = formulas.block_jvp(x, params, x_t, params_t, ctx.shape)
        return out_t, features_t.to(ctx.features_dtype)


class BlockBackward(torch.autograd.Function):
    """``library.block_bwd`` -> ``(dL/dparams,)`` or ``(dL/dparams, dL/dx)``; its own
    derivatives (double backward, Hessians) are the torch formulas."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, params, grad_out, shape, input_grad, backend, precision, deterministic):
        return tuple(
            library.block_bwd(
                x, params, grad_out, dims(shape), input_grad, backend, precision, deterministic
            )
        )

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, params, grad_out, shape, input_grad, *_ = inputs
        ctx.save_for_backward(x, params, grad_out)
        ctx.save_for_forward(x, params, grad_out)
        ctx.shape, ctx.input_grad = shape, input_grad
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, gg_params, gg_x=None):
        dx_dp_dg = formulas.block_bwd_vjp(*ctx.saved_tensors, ctx.shape, gg_params, gg_x)
        return *dx_dp_dg, None, None, None, None, None

    @staticmethod
    def jvp(ctx, x_t, params_t, grad_out_t, *_):
        tangents = (x_t, params_t, grad_out_t)
        gx_t, gparams_t = formulas.block_bwd_jvp(*ctx.saved_tensors, ctx.shape, tangents)
        return (gparams_t, gx_t.float()) if ctx.input_grad else (gparams_t,)


class GradeStep(torch.autograd.Function):
    """``library.grade_step`` -> ``(loss, dloss/dparams)``, differentiable through the torch
    formulas; forward mode is not implemented (torch's error names this class)."""

    generate_vmap_rule = True

    @staticmethod
    def forward(x, y, params, shape, backend, precision, deterministic):
        return library.grade_step(x, y, params, dims(shape), backend, precision, deterministic)

    @staticmethod
    def setup_context(ctx, inputs, output):
        x, y, params, shape, *_ = inputs
        ctx.save_for_backward(x, y, params, output[1])
        ctx.shape = shape
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx, grad_loss, grad_grad):
        grads = step_grads(ctx, *ctx.saved_tensors, grad_loss, grad_grad)
        return *grads, None, None, None, None

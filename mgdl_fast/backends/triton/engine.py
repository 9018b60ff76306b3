"""A grade bound to the Triton kernels: plans, partial-gradient rows, scratch and the weights'
product-precision copy are made at bind; each op builds its launches from them and runs them on
the grade's device.

``*_launches`` return exactly what the op runs (the ahead-of-time compiles use them).
"""

from __future__ import annotations

import contextlib
import os

import torch

from ...kernels import _config
from ..engine import Engine, buffer, count_plan
from . import plans
from ._interpreter import fix_loop_bounds
from .plans import Launch

TILE_ENV = "MGDL_FAST_TRITON_TILE"
FWD_TILE_ENV = "MGDL_FAST_TRITON_FWD_TILE"


def allocate(shape, rows: int, dot: str, det: bool, cfg, target, device) -> tuple:
    """(partial rows, loss, weight copy, scratch g, scratch h) of an engine for up to ``rows``
    rows, each None where the plan needs none."""
    p, w = shape.num_params, shape.width
    programs = plans.max_programs(rows, cfg, target)
    stride = _config.partial_stride(p)
    acc = buffer((programs, stride), torch.float32, device) if det else None
    loss = buffer((), torch.float32, device)
    # The W x W weights in product precision (kernels/_block._wblock); streamed weights
    # always get an aligned copy, as their TMA descriptor needs a 16-byte aligned base.
    wdtype = {"bf16": torch.bfloat16, "tf32": torch.float32}.get(dot)
    if wdtype is None and not cfg.resident:
        wdtype = torch.float32
    wprod = buffer((p,), wdtype, device) if wdtype is not None else None
    # Scratch layers leave g_l (and h_l past layer 0) per row for kernels/weight_grad.py.
    scratch = len(_config.scratch_layers(shape.in_dim, w, shape.hidden_layers, cfg.keep))
    slots = max(1, shape.hidden_layers - cfg.keep - 1)
    half = torch.bfloat16 if dot.startswith("bf16") else torch.float32
    gs = buffer((scratch, rows, w), half, device) if scratch else None
    hs = buffer((slots, rows, w), half, device) if scratch else None
    return acc, loss, wprod, gs, hs


class TritonEngine(Engine):
    def __init__(self, shape, device, input_dtype, rows, options, *, interpret: bool, target=None):
        super().__init__(
            "triton", shape, device, input_dtype, rows, options,
            capturable=device.type == "cuda",
        )  # fmt: skip
        count_plan()
        self.target = target or plans.target_for(device, interpret)
        if self.target.interpret:
            fix_loop_bounds()
        self.dot = plans.dot_for(options.precision, self.target)
        dims = (shape.in_dim, shape.width, shape.hidden_layers, self.dot)
        self.fwd_cfg = _config.tile_config(
            *dims, training=False, override=os.environ.get(FWD_TILE_ENV)
        )
        self.train_cfg = cfg = _config.tile_config(
            *dims, training=True, override=os.environ.get(TILE_ENV)
        )
        self.det = options.deterministic
        self._acc, self._loss, self._wprod, self._gs, self._hs = allocate(
            shape, rows, self.dot, self.det, cfg, self.target, device
        )
        self._fwd: dict[int, plans.BlockPlan] = {}
        self._train: dict[int, plans.BlockPlan] = {}
        self.prepare(rows)
        # Triton launches on the current CUDA device: each op makes it the grade's (T6).
        self._device = torch.cuda.device(device) if device.type == "cuda" else None

    def prepare(self, n: int) -> None:
        self._forward_plan(n)
        self._train_plan(n)

    def _forward_plan(self, n: int) -> plans.BlockPlan:
        plan = self._fwd.get(n)
        if plan is None:
            plan = self._fwd[n] = plans.plan_block(
                self.shape, n, self.dot, self.fwd_cfg, self.target, training=False
            )
        return plan

    def _train_plan(self, n: int) -> plans.BlockPlan:
        plan = self._train.get(n)
        if plan is None:
            plan = self._train[n] = plans.plan_block(
                self.shape, n, self.dot, self.train_cfg, self.target, training=True, det=self.det
            )
        return plan

    def _weights(self, params: torch.Tensor, cfg: _config.TileConfig):
        """What the kernels read the W x W weights from: the parameters in product precision
        (a bf16 copy, or rounded to tf32 to nearest, ties away from zero: add half a tf32 ulp,
        clear the 13 low mantissa bits); for streamed weights a TMA descriptor over them viewed
        as ``[P // W, W]`` (every W x W layer's offset is a multiple of W)."""
        weights = params if self._wprod is None else self._wprod
        if self.dot == "tf32":
            assert self._wprod is not None, "tf32 products always have a rounded weight copy"
            bits = self._wprod.view(torch.int32)
            torch.add(params.view(torch.int32), 0x1000, out=bits)
            bits.bitwise_and_(-0x2000)
        elif self._wprod is not None:
            self._wprod.copy_(params)
        if cfg.resident:
            return weights
        from triton.tools.tensor_descriptor import TensorDescriptor

        w = self.shape.width
        return TensorDescriptor(weights, [weights.numel() // w, w], [w, 1], [cfg.chunk] * 2)

    def _run(self, launches: list[Launch]) -> None:
        with self._device or contextlib.nullcontext():
            for launch in launches:
                launch.run()

    def forward_launches(self, x, params, out, features_out=None) -> list[Launch]:
        n = x.shape[0]
        plan = self._forward_plan(n)
        feats = features_out if features_out is not None else out
        weights = self._weights(params, self.fwd_cfg)
        args = (x, params, weights, out, feats, n, plan.tiles, plan.programs)
        constexprs = {**plan.constexprs, "WRITE_FEATURES": features_out is not None}
        grid = (plan.programs,)
        return [Launch("block_fwd", "_block_fwd_kernel", grid, args, constexprs, plan.options)]

    def forward(self, x, params, out, features_out=None) -> None:
        self._run(self.forward_launches(x, params, out, features_out))

    def _training_args(self, x, params, grad) -> tuple:
        """(weights, partial rows or the zeroed gradient, gs, hs, slot): what both training
        kernels take besides their inputs; the scratch is x when unused."""
        weights = self._weights(params, self.train_cfg)
        partials = self._acc if self.det else grad.zero_()
        if self._gs is None:
            return weights, partials, x, x, 0
        return weights, partials, self._gs, self._hs, self._gs.stride(0)

    def _finish(self, x, main: Launch, plan, grad, loss, loss_scale: float) -> list[Launch]:
        """The training launch, the scratch layers' weight gradients, the reduction."""
        launches = [main]
        if self._gs is not None:
            acc = self._acc if self.det else grad
            launches += plans.weight_grad_launches(
                x, self._gs, self._hs, acc, self.shape, plan, self.train_cfg, self.det
            )
        if self.det:
            launches.append(plans.reduce_launch(self._acc, plan, grad, loss, loss_scale))
        return launches

    def step_launches(self, x, y, params, grad) -> list[Launch]:
        n = x.shape[0]
        plan, count = self._train_plan(n), n * self.shape.out_dim
        loss = self._loss if self.det else self._loss.zero_()
        weights, acc, gs, hs, slot = self._training_args(x, params, grad)
        args = (x, y, params, weights, acc, gs, hs, loss, n, plan.tiles, plan.programs,
                plan.stride, slot, 1.0 / count, 0.5 / count)  # fmt: skip
        grid = (plan.programs,)
        step = Launch("grade_step", "_grade_step_kernel", grid, args, plan.constexprs, plan.options)
        return self._finish(x, step, plan, grad, loss, 0.5 / count)

    def step(self, x, y, params, grad):
        self._run(self.step_launches(x, y, params, grad))
        return self._loss

    def backward_launches(self, x, params, grad_out, grad, grad_x=None) -> list[Launch]:
        n = x.shape[0]
        plan = self._train_plan(n)
        weights, acc, gs, hs, slot = self._training_args(x, params, grad)
        gx = grad_x if grad_x is not None else x
        args = (x, params, weights, grad_out, acc, gs, hs, gx, n, plan.tiles, plan.programs,
                plan.stride, slot)  # fmt: skip
        constexprs = {**plan.constexprs, "WRITE_GX": grad_x is not None}
        grid = (plan.programs,)
        bwd = Launch("block_bwd", "_block_bwd_kernel", grid, args, constexprs, plan.options)
        return self._finish(x, bwd, plan, grad, None, 1.0)

    def backward(self, x, params, grad_out, grad, grad_x=None) -> None:
        self._run(self.backward_launches(x, params, grad_out, grad, grad_x))

    def update_launches(self, params, grad, state) -> list[Launch]:
        grid, meta = plans.optim_grid(params.numel()), {"BLOCK": _config.OPTIM_BLOCK}
        if state.kind == "gd":
            gd_args = (params, grad, params.numel(), state.lr)
            return [Launch("optim", "_gd_kernel", grid, gd_args, meta, {"num_warps": 4})]
        args = (params, grad, state.exp_avg, state.exp_avg_sq, params.numel(), 1.0 - state.beta1,
                state.beta2, 1.0 - state.beta2, state.step_size, state.bias_correction2,
                state.eps)  # fmt: skip
        return [Launch("optim", "_adam_kernel", grid, args, meta, {"num_warps": 4})]

    def _update(self, params, grad, state) -> None:
        self._run(self.update_launches(params, grad, state))

"""Launch plans of the Triton kernels: tile configs, grids, constexprs and scalar arguments.

Made when a grade binds (and once per new row count), never per epoch. A ``Launch`` is one
kernel launch with its arguments, so the ahead-of-time compiles and the kernel report compile
exactly what the engine runs.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field

import torch

from ...block import BlockShape
from ...kernels import _config
from ..engine import count_plan

PRECISION_DOTS = {"bf16": "bf16", "tf32": "tf32", "fp32": "ieee"}


@dataclass(frozen=True)
class Target:
    """What launches are planned for: the interpreter or a GPU, and ``sm_count`` persistent
    programs (None under the interpreter: a few, see kernels/_config.INTERPRETER_PROGRAMS).
    Tests plan interpreted runs for a GPU's 132 programs with ``Target(True, 132)``."""

    interpret: bool
    sm_count: int | None = None


def target_for(device: torch.device, interpret: bool) -> Target:
    if interpret:
        return Target(True)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return Target(False, torch.cuda.get_device_properties(index).multi_processor_count)


def dot_for(precision: str, target: Target) -> str:
    """The kernels' DOT constexpr for a resolved precision (see kernels/_config.DOTS)."""
    return _config.dot_mode(PRECISION_DOTS[precision], target.interpret)


def kernel(module: str, name: str):
    return getattr(importlib.import_module(f"mgdl_fast.kernels.{module}"), name)


@dataclass
class Launch:
    """``fn[grid](*args, **constexprs, **options)``: one launch of ``module.kernel``."""

    module: str
    kernel: str
    grid: tuple[int, ...]
    args: tuple
    constexprs: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    def function(self):
        return kernel(self.module, self.kernel)

    def run(self) -> None:
        self.function()[self.grid](*self.args, **self.constexprs, **self.options)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


@dataclass(frozen=True)
class BlockPlan:
    """A block kernel over ``n`` rows: ``programs`` persistent programs over ``tiles`` tiles,
    their partial-row ``stride`` (training, deterministic; 0 otherwise), constexprs, options."""

    n: int
    tiles: int
    programs: int
    stride: int
    constexprs: dict
    options: dict


def plan_block(
    shape: BlockShape, n: int, dot: str, cfg: _config.TileConfig, target: Target,
    *, training: bool, det: bool = True,
) -> BlockPlan:  # fmt: skip
    count_plan()
    tiles = _cdiv(n, cfg.block_m)
    programs = _config.num_programs(tiles, target.sm_count)
    constexprs = dict(D=shape.in_dim, W=shape.width, WC=cfg.chunk, L=shape.hidden_layers,
                      C=shape.out_dim, BM=cfg.block_m, DOT=dot, RESIDENT=cfg.resident,
                      STAGES=cfg.num_stages)  # fmt: skip
    stride = 0
    if training:
        constexprs |= {"KEEP": cfg.keep, "ATOMIC": not det}
        stride = _config.partial_stride(shape.num_params) if det else 0
    options = {"num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
    return BlockPlan(n, tiles, programs, stride, constexprs, options)


def max_programs(rows: int, cfg: _config.TileConfig, target: Target) -> int:
    """Programs of the largest training launch an engine of ``rows`` rows can make."""
    return _config.num_programs(_cdiv(rows, cfg.block_m), target.sm_count)


def reduce_launch(acc, plan: BlockPlan, grad, loss, loss_scale: float) -> Launch:
    """The fixed-order sum of the partial rows into ``grad [P]`` (and ``loss``)."""
    p, has_loss = grad.numel(), loss is not None
    args = (acc, plan.programs, p, plan.stride, grad, loss if has_loss else grad, loss_scale)
    constexprs = {"BLOCK": _config.REDUCE_BLOCK, "ROWS": _config.REDUCE_ROWS, "HAS_LOSS": has_loss}
    grid = (_cdiv(p + has_loss, _config.REDUCE_BLOCK),)
    return Launch("reduce", "_reduce_partials_kernel", grid, args, constexprs, {"num_warps": 4})


def weight_grad_launches(x, gs, hs, acc, shape: BlockShape, plan: BlockPlan,
                         cfg: _config.TileConfig, det: bool) -> list[Launch]:  # fmt: skip
    """dW_l = h_l^T g_l of every scratch layer from the training kernel's scratch (``gs`` /
    ``hs`` ``[slots, rows, W]``; layer 0 reads x), into the same partial rows (or the gradient
    itself with atomics), by the same number of programs, one program per weight block."""
    d, w, layers = shape.in_dim, shape.width, shape.hidden_layers
    block_m = _config.WEIGHT_GRAD_BLOCK
    tiles = _cdiv(plan.n, block_m)
    c = plan.constexprs
    chunks = _cdiv(w, c["WC"])
    constexprs = dict(W=w, WC=c["WC"], BM=block_m, DOT=c["DOT"], STAGES=2, ATOMIC=not det)
    options = {"num_warps": cfg.num_warps, "num_stages": 2}
    first = 0 if d == w else 1
    launches = []
    for layer in _config.scratch_layers(d, w, layers, cfg.keep):
        h = x if layer == 0 else hs[layer - 1]
        offset = shape.offsets[layer][0]
        args = (h, gs[layer - first], acc, plan.n, tiles, plan.programs, plan.stride, offset)
        grid = (plan.programs, chunks * chunks)
        launches.append(Launch("weight_grad", "_weight_grad_kernel", grid, args, constexprs,
                               options))  # fmt: skip
    return launches


def optim_grid(numel: int) -> tuple[int, ...]:
    return (_cdiv(numel, _config.OPTIM_BLOCK),)

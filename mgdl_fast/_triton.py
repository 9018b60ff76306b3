"""The Triton backend: checks inputs, allocates and launches the kernels of mgdl_fast.kernels.

Ops have the reference signatures plus keyword-only options, each defaulting to an environment
variable:

- ``precision``: the [rows, W] @ [W, W] products. "bf16" (operands rounded to bf16, hidden
  activations kept in bf16), "tf32" or "ieee" (fp32); always fp32 accumulation. Default: "bf16"
  for bf16 inputs, else ``$MGDL_FAST_TRITON_PRECISION``, else "tf32".
- ``deterministic`` (training ops): True sums per-program partial gradients in a fixed order
  (bit-identical reruns for the same N); False adds them with atomics (no partials, no
  reduction launch, order varies). Default ``$MGDL_FAST_TRITON_DETERMINISTIC`` ("0" or "1"),
  else True.

Tile shapes come from kernels/_config.py; ``$MGDL_FAST_TRITON_TILE`` (training kernels) and
``$MGDL_FAST_TRITON_FWD_TILE`` (forward), each "BLOCK_M,NUM_WARPS,CHUNK", override them for
tuning on a GPU.

Kernels and Triton load on first use, so importing this module never compiles. Under
``TRITON_INTERPRET=1`` the kernels run on CPU tensors (the tests); ``auto`` still only picks this
backend for CUDA tensors.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from functools import cache

import torch

from .block import BlockParams, BlockShape
from .errors import InputError
from .kernels import _config

NAME = "triton"
AUTO_DEVICE_TYPES = ("cuda",)
MAX_WIDTH = 256
MAX_LAYERS = 4
MAX_CHANNELS = 4
INPUT_DTYPES = (torch.float32, torch.bfloat16)
PRECISION_ENV = "MGDL_FAST_TRITON_PRECISION"
DETERMINISTIC_ENV = "MGDL_FAST_TRITON_DETERMINISTIC"
TILE_ENV = "MGDL_FAST_TRITON_TILE"
FWD_TILE_ENV = "MGDL_FAST_TRITON_FWD_TILE"
OPTIM_OPS = ("adam_step", "gd_step")


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def unavailable_reason() -> str | None:
    """Why Triton kernels cannot run here at all, or None."""
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        return f"triton is not importable: {exc}"
    if not interpreting() and not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False) and TRITON_INTERPRET is not 1"
    return None


def unsupported_reasons(
    op: str, x: torch.Tensor | None = None, params: BlockParams | None = None
) -> list[str]:
    """Every reason this backend cannot serve ``op`` on these inputs (empty: it can).

    For the optimizer ops ``x`` is the flat parameter vector.
    """
    if op in OPTIM_OPS:
        flat = x if x is not None else (params.flat if params is not None else None)
        return [] if flat is None else _tensor_reasons("parameters", flat, (torch.float32,))
    if params is None:
        return [f"{op} needs the block parameters"]
    why = _shape_reasons(params.shape)
    why += _tensor_reasons("parameters", params.flat, (torch.float32,))
    if x is not None:
        why += _tensor_reasons("x", x, INPUT_DTYPES)
        if x.dim() != 2 or x.shape[1] != params.shape.in_dim:
            why.append(f"x must be [N, {params.shape.in_dim}], got {list(x.shape)}")
        elif x.shape[0] == 0:
            why.append("x has no rows")
        if x.device != params.flat.device:
            why.append(f"x is on {x.device} but the parameters are on {params.flat.device}")
    return why


def _shape_reasons(shape: BlockShape) -> list[str]:
    w, why = shape.width, []
    if w % 16 or w > MAX_WIDTH:
        why.append(f"width {w} is not a multiple of 16 up to {MAX_WIDTH}")
    if shape.hidden_layers > MAX_LAYERS:
        why.append(f"{shape.hidden_layers} hidden layers (at most {MAX_LAYERS})")
    if shape.out_dim > MAX_CHANNELS:
        why.append(f"{shape.out_dim} output channels (at most {MAX_CHANNELS})")
    if shape.in_dim not in (1, 2, 3, w):
        why.append(f"input dim {shape.in_dim} is neither 1, 2, 3 nor the width {w}")
    return why


def _tensor_reasons(name: str, t: torch.Tensor, dtypes: tuple[torch.dtype, ...]) -> list[str]:
    why = []
    if t.dtype not in dtypes:
        why.append(f"{name} dtype {t.dtype} is not one of {', '.join(map(str, dtypes))}")
    if not t.is_contiguous():
        why.append(f"{name} is not contiguous")
    if t.device.type != "cuda" and not (t.device.type == "cpu" and interpreting()):
        why.append(f"{name} is on {t.device}: Triton needs CUDA tensors (CPU: TRITON_INTERPRET=1)")
    return why


def _require(op: str, x: torch.Tensor, params: BlockParams) -> None:
    why = unsupported_reasons(op, x, params)
    if why:
        raise InputError(f"triton cannot run {op}: " + "; ".join(why))


def _check_buffer(name, t, shape, dtypes, device) -> None:
    """A caller-supplied tensor the kernels read or write: shape, dtype, layout, device."""
    if tuple(t.shape) != tuple(shape) or t.dtype not in dtypes:
        raise InputError(f"{name} must be {list(shape)} {dtypes}, got {list(t.shape)} {t.dtype}")
    if not t.is_contiguous() or t.device != device:
        raise InputError(f"{name} must be contiguous on {device}")


def _precision(precision: str | None, x: torch.Tensor) -> str:
    if precision is not None:
        return precision
    return "bf16" if x.dtype == torch.bfloat16 else os.environ.get(PRECISION_ENV) or "tf32"


def _deterministic(deterministic: bool | None) -> bool:
    env = os.environ.get(DETERMINISTIC_ENV, "1") != "0"
    return env if deterministic is None else deterministic


@dataclass(frozen=True)
class Target:
    """What a launch is planned for: the interpreter, or a GPU with ``sm_count`` SMs."""

    interpret: bool
    sm_count: int | None = None


def target_for(device: torch.device) -> Target:
    if interpreting():
        return Target(True)
    return Target(False, _sm_count(device.index if device.index is not None else -1))


@cache
def _sm_count(index: int) -> int:
    device = torch.cuda.current_device() if index < 0 else index
    return torch.cuda.get_device_properties(device).multi_processor_count


@dataclass
class Launch:
    """One kernel launch: ``mgdl_fast.kernels.<module>.<kernel>[grid](*args, **constexprs,
    **options)``. Built by the plan functions, so tests can compile exactly what runs."""

    module: str
    kernel: str
    grid: tuple[int, ...]
    args: tuple
    constexprs: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)

    def function(self):
        return getattr(importlib.import_module(f"mgdl_fast.kernels.{self.module}"), self.kernel)

    def run(self) -> None:
        self.function()[self.grid](*self.args, **self.constexprs, **self.options)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _block_constexprs(shape: BlockShape, dot: str, cfg: _config.TileConfig) -> dict:
    return dict(D=shape.in_dim, W=shape.width, WC=cfg.chunk, L=shape.hidden_layers,
                C=shape.out_dim, BM=cfg.block_m, DOT=dot)  # fmt: skip


def _options(cfg: _config.TileConfig) -> dict:
    return {"num_warps": cfg.num_warps, "num_stages": cfg.num_stages}


def _product_weights(params: BlockParams, dot: str) -> torch.Tensor:
    """The flat parameters in the dtype the kernels' products read: a bf16 copy for "bf16"."""
    return params.flat.to(torch.bfloat16) if dot == "bf16" else params.flat


def plan_block_fwd(x, params, out, features_out, dot: str, target: Target) -> list[Launch]:
    """Launches writing ``out [N, C]`` (and ``features_out [N, W]``) for ``x [N, D]``."""
    n, shape = x.shape[0], params.shape
    cfg = _config.tile_config(
        shape.width, dot, target.interpret, training=False, override=os.environ.get(FWD_TILE_ENV)
    )
    feats = features_out if features_out is not None else out
    constexprs = {**_block_constexprs(shape, dot, cfg), "WRITE_FEATURES": features_out is not None}
    args = (x, params.flat, _product_weights(params, dot), out, feats, n)
    grid = (_cdiv(n, cfg.block_m),)
    return [Launch("block_fwd", "_block_fwd_kernel", grid, args, constexprs, _options(cfg))]


def _partials(params, n, grad, det, dot, target):
    """Tile config, tile count, program count G and the gradient sums the training kernels
    add into: a fresh ``[G, P + 1]`` partial row per program (deterministic), or the zeroed
    gradient itself shared through atomics (row stride 0)."""
    cfg = _config.tile_config(
        params.shape.width, dot, target.interpret, training=True, override=os.environ.get(TILE_ENV)
    )
    tiles = _cdiv(n, cfg.block_m)
    programs = _config.num_programs(tiles, target.sm_count)
    if not det:
        return cfg, tiles, programs, grad.flat.zero_(), 0
    p = params.shape.num_params
    acc = torch.empty(programs, p + 1, dtype=torch.float32, device=grad.flat.device)
    return cfg, tiles, programs, acc, p + 1


def _reduce(acc, programs, stride, grad, loss, loss_scale: float) -> Launch:
    """The deterministic sum of the partial rows into ``grad [P]`` (and ``loss``)."""
    p, has_loss = grad.shape.num_params, loss is not None
    args = (acc, programs, p, stride, grad.flat, loss if has_loss else grad.flat, loss_scale)
    constexprs = {"BLOCK": _config.REDUCE_BLOCK, "ROWS": _config.REDUCE_ROWS, "HAS_LOSS": has_loss}
    grid = (_cdiv(p + has_loss, _config.REDUCE_BLOCK),)
    return Launch("reduce", "_reduce_partials_kernel", grid, args, constexprs, {"num_warps": 4})


def plan_grade_step(x, y, params, grad, loss, dot: str, det: bool, target: Target) -> list:
    """Launches writing the 0.5 * MSE loss into ``loss`` (0-dim, zeroed) and dL/dparams into
    ``grad``."""
    n, shape = x.shape[0], params.shape
    cfg, tiles, programs, acc, stride = _partials(params, n, grad, det, dot, target)
    count = n * shape.out_dim
    args = (x, y, params.flat, _product_weights(params, dot), acc, loss, n, tiles, programs,
            stride, 1.0 / count, 0.5 / count)  # fmt: skip
    constexprs = {**_block_constexprs(shape, dot, cfg), "ATOMIC": not det}
    step = Launch("grade_step", "_grade_step_kernel", (programs,), args, constexprs, _options(cfg))
    return [step, _reduce(acc, programs, stride, grad, loss, 0.5 / count)] if det else [step]


def plan_block_bwd(x, params, grad_out, grad, grad_x, dot: str, det: bool, target: Target):
    """Launches writing dL/dparams into ``grad`` (and dL/dx into ``grad_x``)."""
    n, shape = x.shape[0], params.shape
    cfg, tiles, programs, acc, stride = _partials(params, n, grad, det, dot, target)
    args = (x, params.flat, _product_weights(params, dot), grad_out, acc,
            grad_x if grad_x is not None else x, n, tiles, programs, stride)  # fmt: skip
    constexprs = {**_block_constexprs(shape, dot, cfg), "ATOMIC": not det,
                  "WRITE_GX": grad_x is not None}  # fmt: skip
    step = Launch("block_bwd", "_block_bwd_kernel", (programs,), args, constexprs, _options(cfg))
    return [step, _reduce(acc, programs, stride, grad, None, 1.0)] if det else [step]


def _dot(precision: str | None, x: torch.Tensor, target: Target) -> str:
    try:
        return _config.dot_mode(_precision(precision, x), target.interpret)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _grad_buffer(params: BlockParams, grad_params: BlockParams | None) -> BlockParams:
    if grad_params is None:
        return BlockParams(params.shape, torch.empty_like(params.flat))
    p = params.shape.num_params
    _check_buffer("grad_params", grad_params.flat, (p,), (torch.float32,), params.flat.device)
    return grad_params


def _run(launches: list[Launch]) -> None:
    for launch in launches:
        launch.run()


def block_fwd(
    x: torch.Tensor,
    params: BlockParams,
    *,
    out: torch.Tensor | None = None,
    features_out: torch.Tensor | None = None,
    precision: str | None = None,
) -> torch.Tensor:
    """Block output for ``x [N, D]`` (fp32 or bf16) into ``out [N, C]`` fp32 (allocated when
    None); with ``features_out [N, W]`` (fp32 or bf16) also the last hidden layer. Returns
    ``out``."""
    _require("block_fwd", x, params)
    n, shape = x.shape[0], params.shape
    if out is None:
        out = torch.empty(n, shape.out_dim, dtype=torch.float32, device=x.device)
    _check_buffer("out", out, (n, shape.out_dim), (torch.float32,), x.device)
    if features_out is not None:
        _check_buffer("features_out", features_out, (n, shape.width), INPUT_DTYPES, x.device)
    target = target_for(x.device)
    _run(plan_block_fwd(x, params, out, features_out, _dot(precision, x, target), target))
    return out


def block_bwd(
    x: torch.Tensor,
    params: BlockParams,
    grad_out: torch.Tensor,
    *,
    grad_params: BlockParams | None = None,
    grad_x: torch.Tensor | None = None,
    precision: str | None = None,
    deterministic: bool | None = None,
) -> BlockParams:
    """dL/dparams into ``grad_params`` (allocated when None; returned) and, when given, dL/dx
    into ``grad_x [N, D]``, from ``grad_out = dL/dout [N, C]`` (fp32 or bf16); the forward is
    recomputed on chip."""
    _require("block_bwd", x, params)
    n, shape = x.shape[0], params.shape
    _check_buffer("grad_out", grad_out, (n, shape.out_dim), INPUT_DTYPES, x.device)
    if grad_x is not None:
        _check_buffer("grad_x", grad_x, tuple(x.shape), INPUT_DTYPES, x.device)
    grad_params = _grad_buffer(params, grad_params)
    target = target_for(x.device)
    dot, det = _dot(precision, x, target), _deterministic(deterministic)
    _run(plan_block_bwd(x, params, grad_out, grad_params, grad_x, dot, det, target))
    return grad_params


def grade_step(
    x: torch.Tensor,
    y: torch.Tensor,
    params: BlockParams,
    *,
    grad_params: BlockParams | None = None,
    precision: str | None = None,
    deterministic: bool | None = None,
) -> torch.Tensor:
    """One full-batch step of 0.5 * mean((block(x) - y)^2) for ``x [N, D]`` (fp32 or bf16) and
    ``y [N, C]`` fp32: writes dL/dparams into ``grad_params`` (allocated when None) and returns
    the loss as a 0-dim fp32 device tensor (no host sync)."""
    _require("grade_step", x, params)
    n, shape = x.shape[0], params.shape
    _check_buffer("y", y, (n, shape.out_dim), (torch.float32,), x.device)
    grad_params = _grad_buffer(params, grad_params)
    loss = torch.zeros((), dtype=torch.float32, device=x.device)
    target = target_for(x.device)
    dot, det = _dot(precision, x, target), _deterministic(deterministic)
    _run(plan_grade_step(x, y, params, grad_params, loss, dot, det, target))
    return loss


def _check_flat(params: torch.Tensor, *others: torch.Tensor) -> None:
    why = _tensor_reasons("parameters", params, (torch.float32,))
    if why:
        raise InputError("triton cannot update the parameters: " + "; ".join(why))
    for name, t in zip(("grad", "exp_avg", "exp_avg_sq"), others):
        _check_buffer(name, t, tuple(params.shape), (torch.float32,), params.device)


def _elementwise(kernel: str, args: tuple) -> Launch:
    """An optimizer kernel over the flat ``[P]`` vector ``args[0]``."""
    grid = (_cdiv(args[0].numel(), _config.OPTIM_BLOCK),)
    return Launch("optim", kernel, grid, args, {"BLOCK": _config.OPTIM_BLOCK}, {"num_warps": 4})


def plan_adam(params, grad, exp_avg, exp_avg_sq, *, step, lr, beta1, beta2, eps) -> Launch:
    # Bias corrections in float64 on the host, as the reference computes them.
    args = (params, grad, exp_avg, exp_avg_sq, params.numel(), 1.0 - beta1, beta2, 1.0 - beta2,
            1.0 - beta2**step, lr / (1.0 - beta1**step), eps)  # fmt: skip
    return _elementwise("_adam_kernel", args)


def adam_step(
    params: torch.Tensor,
    grad: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    *,
    step: int,
    lr: float,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
) -> None:
    """One bias-corrected Adam update in place over ``[P]`` fp32 tensors (``step`` from 1),
    the reference's formula in one pass."""
    _check_flat(params, grad, exp_avg, exp_avg_sq)
    kwargs = {"step": step, "lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps}
    plan_adam(params, grad, exp_avg, exp_avg_sq, **kwargs).run()


def plan_gd(params, grad, *, lr) -> Launch:
    return _elementwise("_gd_kernel", (params, grad, params.numel(), lr))


def gd_step(params: torch.Tensor, grad: torch.Tensor, *, lr: float) -> None:
    """Gradient descent ``params -= lr * grad`` in place over ``[P]`` fp32 tensors."""
    _check_flat(params, grad)
    plan_gd(params, grad, lr=lr).run()

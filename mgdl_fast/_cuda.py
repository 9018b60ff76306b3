"""The ``cuda`` backend: host wrappers around the torch-free CUDA core ``mgdl_fast._C``.

Checks inputs, allocates outputs and workspaces with torch, and hands ``_C`` raw device
pointers (``tensor.data_ptr()``), sizes and torch's current stream. ``_C`` is imported on first
use, never at import time, so importing this module works without the extension or a GPU.
Errors from CUDA arrive as ``_C.CudaError`` (a RuntimeError) with the failing call named.
"""

from __future__ import annotations

import functools
import importlib

import torch

from .block import BlockParams, BlockShape
from .errors import BackendUnavailableError, InputError

NAME = "cuda"
AUTO_DEVICE_TYPES = ("cuda",)

WIDTHS = (32, 64, 128, 256)
MAX_SMALL_IN = 3
MAX_OUT = 4
MAX_HIDDEN = 8
MIN_CAPABILITY = (8, 0)
# Shared memory a block may use on an H100/H200, for reasons given about tensors not on a GPU.
HOPPER_SMEM_OPTIN = 232_448
OPTIMIZER_OPS = ("adam_step", "gd_step")
TRAIN_OPS = ("grade_step", "block_bwd")
X_DTYPES = (torch.float32, torch.bfloat16)

_ext = None
_ext_error: str | None = None


def _extension():
    """The compiled module, imported once; None (with ``_ext_error`` set) when it cannot be."""
    global _ext, _ext_error
    if _ext is None and _ext_error is None:
        try:
            _ext = importlib.import_module("mgdl_fast._C")
        except ImportError as exc:
            _ext_error = (
                f"mgdl_fast._C is not built or cannot be imported ({exc}); "
                "reinstall with MGDL_FAST_CUDA=ON and nvcc on the PATH"
            )
    return _ext


@functools.cache
def unavailable_reason() -> str | None:
    """Why this backend cannot run at all here (no extension, driver or device), or None."""
    ext = _extension()
    if ext is None:
        return _ext_error
    try:
        count = ext.device_count()
    except ext.CudaError as exc:
        return f"no usable CUDA driver or device: {exc}"
    if count == 0:
        return "no CUDA device is present"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device (a CPU-only torch build?)"
    return None


def unsupported_reasons(
    op: str, x: torch.Tensor | None = None, params: BlockParams | None = None
) -> list[str]:
    """Every reason this backend cannot serve ``op`` on these inputs (empty: it can).

    Optimizer ops pass the flat parameter vector as ``x``.
    """
    if op in OPTIMIZER_OPS:
        flat = x if x is not None else (params.flat if params is not None else None)
        return [] if flat is None else _tensor_reasons("params", flat, (torch.float32,))
    reasons: list[str] = []
    if x is not None:
        reasons += _tensor_reasons("x", x, X_DTYPES)
        if x.dim() != 2:
            reasons.append(f"x must be 2-D [N, D], got shape {tuple(x.shape)}")
        elif x.shape[0] < 1:
            reasons.append("x has no rows")
    if params is not None:
        reasons += _tensor_reasons("params", params.flat, (torch.float32,))
        reasons += _shape_reasons(params.shape, x, train=op in TRAIN_OPS)
        if x is not None and x.device != params.flat.device:
            reasons.append(f"x is on {x.device} but params on {params.flat.device}")
    return reasons


def _tensor_reasons(name: str, t: torch.Tensor, dtypes: tuple[torch.dtype, ...]) -> list[str]:
    reasons = []
    if t.device.type != "cuda":
        reasons.append(f"{name} is on {t.device}, not a CUDA device")
    elif torch.cuda.get_device_capability(t.device) < MIN_CAPABILITY:
        reasons.append(f"{t.device} has compute capability below 8.0 (no bf16 mma)")
    if t.dtype not in dtypes:
        allowed = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        reasons.append(f"{name} dtype is {str(t.dtype).removeprefix('torch.')}, not {allowed}")
    if not t.is_contiguous():
        reasons.append(f"{name} is not contiguous")
    elif t.data_ptr() % 16:
        reasons.append(f"{name} is not 16-byte aligned")
    return reasons


def _shape_reasons(shape: BlockShape, x: torch.Tensor | None, *, train: bool) -> list[str]:
    d, w, layers, c = shape.in_dim, shape.width, shape.hidden_layers, shape.out_dim
    reasons = []
    if w not in WIDTHS:
        reasons.append(f"width {w} is not one of {WIDTHS}")
    if d > MAX_SMALL_IN and d != w:
        reasons.append(f"input dim {d} is neither <= {MAX_SMALL_IN} nor the width {w}")
    if c > MAX_OUT:
        reasons.append(f"{c} output channels > {MAX_OUT}")
    if layers > MAX_HIDDEN:
        reasons.append(f"{layers} hidden layers > {MAX_HIDDEN}")
    if x is not None and x.dim() == 2 and x.shape[1] != d:
        reasons.append(f"x has {x.shape[1]} columns but the block's input dim is {d}")
    ext = _extension()
    if reasons or ext is None:
        return reasons
    limit = HOPPER_SMEM_OPTIN
    if x is not None and x.device.type == "cuda":
        limit = ext.max_smem_optin(x.device.index)
    if ext.plan(d, w, layers, c, train, limit) is None:
        reasons.append(
            f"weights and tiles need more shared memory than the {limit} bytes a block gets"
        )
    return reasons


def _require(op: str, x: torch.Tensor | None, params: BlockParams | None) -> None:
    why = unavailable_reason()
    reasons = [why] if why else unsupported_reasons(op, x, params)
    if reasons:
        raise BackendUnavailableError(f"backend 'cuda' cannot run {op}: " + "; ".join(reasons))


def _check_buffer(
    name: str, t: torch.Tensor, like: torch.Tensor, shape: tuple, dtypes: tuple[torch.dtype, ...]
) -> None:
    """Caller-provided outputs must already be right: they are written in place."""
    if tuple(t.shape) != shape or t.dtype not in dtypes or t.device != like.device:
        raise InputError(
            f"{name} must be {shape} of {dtypes} on {like.device}, got {tuple(t.shape)} "
            f"{t.dtype} on {t.device}"
        )
    if not t.is_contiguous() or t.data_ptr() % 16:
        raise InputError(f"{name} must be contiguous and 16-byte aligned")


def _rows_f32(name: str, t: torch.Tensor, n: int, c: int, like: torch.Tensor) -> torch.Tensor:
    if tuple(t.shape) != (n, c) or t.device != like.device:
        raise InputError(f"{name} must be ({n}, {c}) on {like.device}, got {tuple(t.shape)}")
    return t.to(torch.float32).contiguous()


def _stream(t: torch.Tensor) -> int:
    return torch.cuda.current_stream(t.device).cuda_stream


def _dims(x: torch.Tensor, shape: BlockShape) -> dict[str, int]:
    return {
        "n": x.shape[0],
        "d": shape.in_dim,
        "w": shape.width,
        "l": shape.hidden_layers,
        "c": shape.out_dim,
    }


def block_fwd(
    x: torch.Tensor,
    params: BlockParams,
    *,
    out: torch.Tensor | None = None,
    features_out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Block output ``[N, C]`` fp32 for ``x [N, D]`` (fp32 or bf16); optionally the last hidden
    layer into ``features_out [N, W]`` (fp32 or bf16). Returns ``out``."""
    _require("block_fwd", x, params)
    n, shape = x.shape[0], params.shape
    if out is None:
        out = torch.empty(n, shape.out_dim, dtype=torch.float32, device=x.device)
    _check_buffer("out", out, x, (n, shape.out_dim), (torch.float32,))
    if features_out is not None:
        _check_buffer("features_out", features_out, x, (n, shape.width), X_DTYPES)
    _extension().block_fwd(
        device=x.device.index,
        stream=_stream(x),
        x=x.data_ptr(),
        x_bf16=x.dtype == torch.bfloat16,
        params=params.flat.data_ptr(),
        out=out.data_ptr(),
        features=0 if features_out is None else features_out.data_ptr(),
        features_bf16=features_out is not None and features_out.dtype == torch.bfloat16,
        **_dims(x, shape),
    )
    return out


@functools.lru_cache(maxsize=64)
def _workspace_floats(device: int, n: int, d: int, w: int, l: int, c: int) -> int:  # noqa: E741
    blocks, pitch = _extension().train_workspace(device=device, n=n, d=d, w=w, l=l, c=c)
    return blocks * pitch + blocks


def _train(x, params, grad, *, target=None, grad_out=None, grad_x=None, loss=None) -> None:
    dims = _dims(x, params.shape)
    floats = _workspace_floats(x.device.index, *dims.values())
    workspace = torch.empty(floats, dtype=torch.float32, device=x.device)
    _extension().block_train(
        device=x.device.index,
        stream=_stream(x),
        x=x.data_ptr(),
        x_bf16=x.dtype == torch.bfloat16,
        params=params.flat.data_ptr(),
        target=0 if target is None else target.data_ptr(),
        grad_out=0 if grad_out is None else grad_out.data_ptr(),
        grad_x=0 if grad_x is None else grad_x.data_ptr(),
        grad_x_bf16=grad_x is not None and grad_x.dtype == torch.bfloat16,
        grad=grad.flat.data_ptr(),
        loss=0 if loss is None else loss.data_ptr(),
        workspace=workspace.data_ptr(),
        workspace_floats=floats,
        **dims,
    )


def _grad_buffer(params: BlockParams, grad_params: BlockParams | None) -> BlockParams:
    if grad_params is None:
        return params.zeros_like()
    _check_buffer(
        "grad_params", grad_params.flat, params.flat, tuple(params.flat.shape), (torch.float32,)
    )
    return grad_params


def block_bwd(
    x: torch.Tensor,
    params: BlockParams,
    grad_out: torch.Tensor,
    *,
    grad_params: BlockParams | None = None,
    grad_x: torch.Tensor | None = None,
) -> BlockParams:
    """dL/dparams into ``grad_params`` (and dL/dx into ``grad_x [N, D]``, fp32 or bf16) for a
    given ``grad_out = dL/dout [N, C]``, recomputing the forward. Returns ``grad_params``."""
    _require("block_bwd", x, params)
    n, shape = x.shape[0], params.shape
    grad_params = _grad_buffer(params, grad_params)
    grad_out = _rows_f32("grad_out", grad_out, n, shape.out_dim, x)
    if grad_x is not None:
        _check_buffer("grad_x", grad_x, x, (n, shape.in_dim), X_DTYPES)
    _train(x, params, grad_params, grad_out=grad_out, grad_x=grad_x)
    return grad_params


def grade_step(
    x: torch.Tensor,
    y: torch.Tensor,
    params: BlockParams,
    *,
    grad_params: BlockParams | None = None,
) -> torch.Tensor:
    """One fused step of 0.5 * mean((block(x) - y)^2): writes dL/dparams into ``grad_params``
    (allocated when None) and returns the loss as a 0-dim fp32 tensor on the device."""
    _require("grade_step", x, params)
    grad_params = _grad_buffer(params, grad_params)
    y = _rows_f32("y", y, x.shape[0], params.shape.out_dim, x)
    loss = torch.empty((), dtype=torch.float32, device=x.device)
    _train(x, params, grad_params, target=y, loss=loss)
    return loss


def _check_vectors(op: str, params: torch.Tensor, *others: torch.Tensor) -> None:
    _require(op, params, None)
    for t in others:
        _check_buffer(op + " vector", t, params, tuple(params.shape), (torch.float32,))


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
    """One bias-corrected Adam update of the flat fp32 vectors ``[P]`` in place."""
    _check_vectors("adam_step", params, grad, exp_avg, exp_avg_sq)
    _extension().adam_step(
        device=params.device.index,
        stream=_stream(params),
        params=params.data_ptr(),
        grad=grad.data_ptr(),
        exp_avg=exp_avg.data_ptr(),
        exp_avg_sq=exp_avg_sq.data_ptr(),
        n=params.numel(),
        step=step,
        lr=lr,
        beta1=beta1,
        beta2=beta2,
        eps=eps,
    )


def gd_step(params: torch.Tensor, grad: torch.Tensor, *, lr: float) -> None:
    """Plain gradient descent ``params -= lr * grad`` in place."""
    _check_vectors("gd_step", params, grad)
    _extension().gd_step(
        device=params.device.index,
        stream=_stream(params),
        params=params.data_ptr(),
        grad=grad.data_ptr(),
        n=params.numel(),
        lr=lr,
    )

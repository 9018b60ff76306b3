"""The ``cuda`` backend: host glue over the torch-free CUDA core ``mgdl_fast._C``.

The engine hands ``_C`` raw device pointers (``tensor.data_ptr()``), sizes and torch's current
stream. ``_C`` is imported on first use, never at import time, so importing this module works
without the extension or a GPU. Its limits (widths, layers, input and output dims) and the
shared-memory plan come from ``_C`` itself. Errors from CUDA arrive as ``_C.CudaError`` (a
RuntimeError) with the failing call named.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path

import torch

from ..base import Backend, Capabilities
from ..engine import EngineMemory
from .engine import CudaEngine

__all__ = ["CudaBackend"]

MIN_CAPABILITY = (8, 0)
# Dynamic shared memory a block may use on an H100/H200 (the 232,448 bytes of opt-in less the
# kernels' 1 KB of static shared memory), for the plan given about tensors not on a GPU.
HOPPER_DYNAMIC_SMEM = 232_448 - 1024


@functools.cache
def extension():
    """The compiled module, or the ImportError explaining why it cannot be imported."""
    try:
        return importlib.import_module("mgdl_fast._C")
    except ImportError as exc:
        return exc


class CudaBackend(Backend):
    """bf16 tensor cores with fp32 accumulation (wgmma on sm_90a, mma.sync on sm_80+)."""

    name = "cuda"

    @property
    def capabilities(self) -> Capabilities:
        ext = extension()
        limits = (
            (ext.WIDTHS, ext.MAX_HIDDEN, ext.MAX_SMALL_IN, ext.MAX_OUT)
            if not isinstance(ext, ImportError)
            else ((), 0, 0, 0)
        )
        return Capabilities(
            device_types=("cuda",),
            auto_device_types=("cuda",),
            input_dtypes=(torch.float32, torch.bfloat16),
            precisions=("bf16",),
            widths=tuple(limits[0]),
            max_hidden_layers=limits[1],
            max_small_in_dim=limits[2],
            max_out_dim=limits[3],
            cuda_graphs=True,
        )

    @functools.cache  # noqa: B019 (one backend object per process)
    def unavailable_reason(self) -> str | None:
        ext = extension()
        if isinstance(ext, ImportError):
            return (
                f"mgdl_fast._C is not built or cannot be imported ({ext}); "
                "reinstall with MGDL_FAST_CUDA=ON and nvcc on the PATH"
            )
        try:
            count = ext.device_count()
        except ext.CudaError as exc:
            return f"no usable CUDA driver or device: {exc}"
        if count == 0:
            return "no CUDA device is present"
        if not torch.cuda.is_available():
            return "torch sees no CUDA device (a CPU-only torch build?)"
        return None

    def not_supported_reasons(self, shape, device, input_dtype, options) -> list[str]:
        why = super().not_supported_reasons(shape, device, input_dtype, options)
        on_gpu = device.type == "cuda"
        if on_gpu and torch.cuda.get_device_capability(device) < MIN_CAPABILITY:
            why.append(f"{device} has compute capability below 8.0 (no bf16 mma)")
        ext = extension()
        dims = (shape.in_dim, shape.width, shape.hidden_layers, shape.out_dim)
        if isinstance(ext, ImportError) or ext.check_dims(1, *dims) is not None:
            return why
        # The training plan is the larger one; off a GPU, the plan an H100/H200 would make.
        if on_gpu:
            plan = ext.device_plan(device.index or 0, *dims, True)
            where = f"a block gets on {device}"
        else:
            plan = ext.plan(*dims, True, HOPPER_DYNAMIC_SMEM)
            where = f"a block gets on an H100/H200 ({HOPPER_DYNAMIC_SMEM} bytes)"
        if plan is None:
            why.append(f"weights and tiles need more shared memory than {where}")
        return why

    def launch_geometry(self, shape, device, input_dtype, options) -> tuple[int, int]:
        # ``blocks`` is the resident grid (SMs x blocks per SM), whatever the row count.
        index = device.index if device.index is not None else torch.cuda.current_device()
        dims = {"d": shape.in_dim, "w": shape.width, "l": shape.hidden_layers, "c": shape.out_dim}
        plan = extension().Plan(device=index, rows=1, train=True, **dims)
        return plan.tile_rows, plan.blocks

    def memory(self, shape, device, input_dtype, options) -> EngineMemory:
        # The workspace: one partial row per resident block, whatever the row count; the loss.
        index = device.index if device.index is not None else torch.cuda.current_device()
        dims = {"d": shape.in_dim, "w": shape.width, "l": shape.hidden_layers, "c": shape.out_dim}
        plan = extension().Plan(device=index, rows=1, train=True, **dims)
        return EngineMemory(4 * plan.workspace_floats + 4, 0)

    def source_files(self) -> list[Path]:
        """This folder's Python (the engine builds every launch's arguments) and ``_C``."""
        ext = extension()
        binary = [] if isinstance(ext, ImportError) else [Path(ext.__file__)]
        return [*sorted(Path(__file__).parent.glob("*.py")), *binary]

    def _bind(self, shape, device, input_dtype, rows, options) -> CudaEngine:
        return CudaEngine(extension(), shape, device, input_dtype, rows, options)

"""The Triton backend: fused block kernels (``mgdl_fast.kernels``) for CUDA devices.

Precisions: "bf16" (operands rounded to bf16, hidden activations kept in bf16; ``auto`` for
bf16 inputs), "tf32" (operands rounded to tf32 to nearest, ties away; ``auto`` for fp32 inputs
on a GPU) or "fp32" (fp32 CUDA-core products: a correctness path; ``auto`` for fp32 inputs
under the interpreter); always fp32 accumulation.
``deterministic`` sums the persistent programs' partial gradients in a fixed order
(bit-identical reruns); otherwise programs add them with atomics.

Tile shapes come from kernels/_config.py; ``$MGDL_FAST_TRITON_TILE`` (training kernels) and
``$MGDL_FAST_TRITON_FWD_TILE`` (forward), each "BLOCK_M,NUM_WARPS,CHUNK[,KEEP[,STAGES]]",
override them for tuning on a GPU; both are read when a grade binds. bench/triton_aot.py
compiles the launches for sm_90 without a GPU (bench/kernel_report.py reads its output).

Triton and the kernels load on first use, so importing this module never compiles. Under
``TRITON_INTERPRET=1`` the kernels run on CPU tensors (the tests); ``auto`` still picks this
backend only for CUDA tensors.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..base import Backend, Capabilities
from .source_tree import ensure_kernels

if TYPE_CHECKING:
    from ..engine import EngineMemory
    from .engine import TritonEngine

__all__ = ["TritonBackend", "interpreting"]
# Before .engine and .plans import mgdl_fast.kernels (they are imported lazily below).
ensure_kernels()


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


class TritonBackend(Backend):
    """Widths 16-256 in steps of 16, 1-4 hidden layers, inputs 1-3 or the width, 1-4 outputs."""

    name = "triton"
    _capabilities = Capabilities(
        device_types=("cuda", "cpu"),
        auto_device_types=("cuda",),
        input_dtypes=(torch.float32, torch.bfloat16),
        precisions=("tf32", "bf16", "fp32"),
        widths=tuple(range(16, 257, 16)),
        max_hidden_layers=4,
        max_small_in_dim=3,
        max_out_dim=4,
        cuda_graphs=True,
    )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def unavailable_reason(self) -> str | None:
        try:
            import triton  # noqa: F401
        except ImportError as exc:
            return f"triton is not importable: {exc}"
        if not interpreting() and not torch.cuda.is_available():
            return "no CUDA device (torch.cuda.is_available() is False) and TRITON_INTERPRET != 1"
        return None

    def default_precision(self, input_dtype: torch.dtype) -> str:
        if input_dtype == torch.bfloat16:
            return "bf16"
        # The interpreter's tf32 is an exact emulation (operands rounded as on the GPU) with no
        # speed to gain, so auto keeps fp32 there; an explicit "tf32" still emulates it.
        return "fp32" if interpreting() else "tf32"

    def not_supported_reasons(self, shape, device, input_dtype, options) -> list[str]:
        why = super().not_supported_reasons(shape, device, input_dtype, options)
        if device.type == "cpu" and not interpreting():
            why.append("CPU tensors run only under the Triton interpreter (TRITON_INTERPRET=1)")
        return why

    def launch_geometry(self, shape, device, input_dtype, options) -> tuple[int, int]:
        from ...kernels import _config
        from . import plans
        from .engine import TILE_ENV

        target = plans.target_for(device, interpreting())
        dot = plans.dot_for(self.resolve_options(options, input_dtype).precision, target)
        dims = (shape.in_dim, shape.width, shape.hidden_layers, dot)
        cfg = _config.tile_config(*dims, training=True, override=os.environ.get(TILE_ENV))
        return cfg.block_m, _config.num_programs(1 << 30, target.sm_count)

    def memory(self, shape, device, input_dtype, options) -> EngineMemory:
        from ...kernels import _config
        from ..engine import measure_buffers
        from . import plans
        from .engine import TILE_ENV, allocate

        target = plans.target_for(device, interpreting())
        dot = plans.dot_for(self.resolve_options(options, input_dtype).precision, target)
        dims = (shape.in_dim, shape.width, shape.hidden_layers, dot)
        cfg = _config.tile_config(*dims, training=True, override=os.environ.get(TILE_ENV))
        det = options.deterministic
        return measure_buffers(
            lambda rows, meta: allocate(shape, rows, dot, det, cfg, target, meta)
        )

    def source_files(self) -> list[Path]:
        from ... import kernels

        own = Path(__file__).parent
        return sorted([*Path(kernels.__file__).parent.glob("*.py"), *own.glob("*.py")])

    def _bind(self, shape, device, input_dtype, rows, options) -> TritonEngine:
        from .engine import TritonEngine

        return TritonEngine(shape, device, input_dtype, rows, options, interpret=interpreting())

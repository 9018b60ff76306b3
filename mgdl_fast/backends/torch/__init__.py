"""The torch backend: plain PyTorch on any device, the oracle and the fallback.

Hand-written forward and backward with out-of-autograd ops into buffers made at bind time.
Precision "fp32" is the specification the kernel backends are checked against; "bf16" (bf16.py)
keeps operands and activations in bf16 with fp32 accumulation: oneDNN GEMMs on a CPU with bf16
instructions, tensor-core cuBLAS GEMMs on a CUDA device with bf16 (compute capability 8.0+).
``auto`` means bf16 where the device has it and the accuracy check against fp32 passes (the same
comparison the kernels get, run in process: this backend cannot crash the caller), fp32
otherwise. On a GPU that is what auto picks when the kernel backends cannot serve a grade.
"""

from __future__ import annotations

import logging

import torch

from ...block import BlockShape
from ..base import Backend, Capabilities, Options
from ..engine import Engine, EngineMemory, buffer, measure_buffers
from . import bf16
from ._layers import Buffers
from .block_bwd import block_bwd
from .block_fwd import block_fwd
from .grade_step import grade_step
from .optim import adam_update, gd_update

__all__ = ["TorchBackend", "TorchEngine"]
_log = logging.getLogger("mgdl_fast")


class TorchBackend(Backend):
    """Every shape, on CPU and CUDA, fp32 or bf16 inputs; fp32 or bf16 products."""

    name = "torch"
    _capabilities = Capabilities(
        device_types=("cpu", "cuda"),
        auto_device_types=("cpu", "cuda"),
        input_dtypes=(torch.float32, torch.bfloat16),
        precisions=("fp32", "bf16"),
        cuda_graphs=True,
    )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def default_precision(self, input_dtype: torch.dtype) -> str:
        return "fp32"

    def not_supported_reasons(self, shape, device, input_dtype, options) -> list[str]:
        why = super().not_supported_reasons(shape, device, input_dtype, options)
        if options.precision == "bf16" and device.type == "cuda":
            reason = bf16.cuda_bf16_reason(device)
            if reason is not None:
                why.append(f"bf16 products: {reason}")
        return why

    def auto_precision(self, shape: BlockShape, device: torch.device, input_dtype) -> tuple:
        """(precision, why or self-check) of ``auto``: bf16 where the device has it and its
        accuracy check passes."""
        from .. import selfcheck

        reason = bf16.cpu_bf16_reason() if device.type == "cpu" else bf16.cuda_bf16_reason(device)
        if reason is not None:
            return "fp32", reason
        options = Options("bf16")
        check = selfcheck.validate(self, shape, device, input_dtype, options, isolate=False)
        if check is not None and not check["passed"]:
            _log.warning("torch bf16 %s; using fp32", selfcheck.failure_line(check))
            return "fp32", check
        return "bf16", check

    def launch_geometry(self, shape, device, input_dtype, options) -> tuple[int, int]:
        # No tiles: row counts of about a thousand, where a bf16 gradient's error is that of
        # its products, not the cancellation of a few rows' terms (at 64 rows a W = 16 grade's
        # gradient erred 7.6e-2 against fp32, at 1200 rows 5e-3).
        return 128, 2

    def memory(self, shape, device, input_dtype, options) -> EngineMemory:
        precisions = [options.precision]
        if options.precision == "auto":
            reason = (
                bf16.cpu_bf16_reason() if device.type == "cpu" else bf16.cuda_bf16_reason(device)
            )
            precisions = ["fp32"] if reason is not None else ["fp32", "bf16"]
        found = [
            measure_buffers(lambda rows, meta, p=p: make_buffers(shape, input_dtype, p, rows, meta))
            for p in precisions
        ]
        return EngineMemory(max(m.fixed for m in found), max(m.per_row for m in found))

    def bind(self, shape, device, input_dtype, rows, options) -> Engine:
        decision = None
        if options.precision == "auto":
            precision, decision = self.auto_precision(shape, device, input_dtype)
            options = Options(precision, options.deterministic)
        engine = self._bind(shape, device, input_dtype, rows, options)
        if isinstance(decision, dict):
            engine.self_check = {"torch-bf16": decision}
        return engine

    def _bind(self, shape, device, input_dtype, rows, options) -> TorchEngine:
        return TorchEngine(shape, device, input_dtype, rows, options)


def make_buffers(
    shape, input_dtype, precision: str, rows: int, device
) -> Buffers | bf16.Bf16Buffers:
    """Every buffer of an engine computing in ``precision`` for up to ``rows`` rows."""
    if precision == "bf16":
        return bf16.Bf16Buffers(shape, rows, device)
    f32, w, c = torch.float32, shape.width, shape.out_dim
    return Buffers(
        x=None if input_dtype == f32 else buffer((rows, shape.in_dim), f32, device),
        hidden=[buffer((rows, w), f32, device) for _ in range(shape.hidden_layers)],
        grads=[buffer((rows, w), f32, device) for _ in range(2)],
        out=buffer((rows, c), f32, device),
        squares=buffer((rows, c), f32, device),
        loss=buffer((), f32, device),
    )


class _ViewCache:
    """Weight/bias views of the flat vector used last (the same tensor every epoch)."""

    def __init__(self, shape: BlockShape):
        self.shape = shape
        self.flat: torch.Tensor | None = None
        self.views: tuple[list[torch.Tensor], list[torch.Tensor]] = ([], [])

    def __call__(self, flat: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if flat is not self.flat:
            self.flat, self.views = flat, self.shape.views(flat)
        return self.views


class TorchEngine(Engine):
    def __init__(self, shape, device, input_dtype, rows, options: Options):
        super().__init__(
            "torch", shape, device, input_dtype, rows, options,
            capturable=device.type == "cuda",
        )  # fmt: skip
        self._params, self._grads = _ViewCache(shape), _ViewCache(shape)
        self._update_fn = {"adam": adam_update, "gd": gd_update}
        bufs = make_buffers(shape, input_dtype, options.precision, rows, device)
        self._bf16 = bufs if isinstance(bufs, bf16.Bf16Buffers) else None
        if self._bf16 is None:
            assert isinstance(bufs, Buffers)
            self._bufs = bufs

    def prepare(self, n: int) -> None:
        (self._bf16 or self._bufs).count(n * self.shape.out_dim)

    def forward(self, x, params, out, features_out=None) -> None:
        weights, biases = self._params(params)
        if self._bf16 is None:
            block_fwd(x, weights, biases, out, features_out, self._bufs.take(x.shape[0]))
            return
        n = x.shape[0]
        hs = bf16.forward(self._bf16, x, weights, biases, n)
        out.copy_(self._bf16.out[:n])
        if features_out is not None:
            features_out.copy_(hs[-1])

    def step(self, x, y, params, grad):
        weights, biases = self._params(params)
        grad_w, grad_b = self._grads(grad)
        if self._bf16 is not None:
            return bf16.step(self._bf16, x, y, weights, biases, grad_w, grad_b)
        return grade_step(x, y, weights, biases, grad_w, grad_b, self._bufs)

    def backward(self, x, params, grad_out, grad, grad_x=None) -> None:
        weights, biases = self._params(params)
        grad_w, grad_b = self._grads(grad)
        if self._bf16 is not None:
            hs = bf16.forward(self._bf16, x, weights, biases, x.shape[0])
            bf16.backward(self._bf16, hs, grad_out, grad_w, grad_b, grad_x)
            return
        views = self._bufs.take(x.shape[0])
        block_bwd(x, weights, biases, grad_out, grad_w, grad_b, grad_x, views)

    def update_scratch(self) -> int:
        return 2

    def _update(self, params, grad, state) -> None:
        self._update_fn[state.kind](params, grad, state)

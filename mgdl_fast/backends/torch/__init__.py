"""The torch backend: plain PyTorch on any device, the oracle and the fallback.

Hand-written forward and backward with out-of-autograd ops into buffers made at bind time; its
products are fp32 (the specification the kernel backends are checked against).
"""

from __future__ import annotations

import torch

from ...block import BlockShape
from ..base import Backend, Capabilities, Options
from ..engine import Engine, buffer
from ._layers import Buffers
from .block_bwd import block_bwd
from .block_fwd import block_fwd
from .grade_step import grade_step
from .optim import adam_update, gd_update

__all__ = ["TorchBackend", "TorchEngine"]


class TorchBackend(Backend):
    """Every shape, on CPU and CUDA, fp32 or bf16 inputs, fp32 products."""

    name = "torch"
    _capabilities = Capabilities(
        device_types=("cpu", "cuda"),
        auto_device_types=("cpu", "cuda"),
        input_dtypes=(torch.float32, torch.bfloat16),
        precisions=("fp32",),
        cuda_graphs=True,
    )

    @property
    def capabilities(self) -> Capabilities:
        return self._capabilities

    def _bind(self, shape, device, input_dtype, rows, options) -> TorchEngine:
        return TorchEngine(shape, device, input_dtype, rows, options)


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
        f32, w, c = torch.float32, shape.width, shape.out_dim
        self._bufs = Buffers(
            x=None if input_dtype == f32 else buffer((rows, shape.in_dim), f32, device),
            hidden=[buffer((rows, w), f32, device) for _ in range(shape.hidden_layers)],
            grads=[buffer((rows, w), f32, device) for _ in range(2)],
            out=buffer((rows, c), f32, device),
            squares=buffer((rows, c), f32, device),
            loss=buffer((), f32, device),
        )
        self._params, self._grads = _ViewCache(shape), _ViewCache(shape)
        self._update_fn = {"adam": adam_update, "gd": gd_update}

    def prepare(self, n: int) -> None:
        self._bufs.count(n * self.shape.out_dim)

    def forward(self, x, params, out, features_out=None) -> None:
        weights, biases = self._params(params)
        block_fwd(x, weights, biases, out, features_out, self._bufs.take(x.shape[0]))

    def step(self, x, y, params, grad):
        weights, biases = self._params(params)
        grad_w, grad_b = self._grads(grad)
        return grade_step(x, y, weights, biases, grad_w, grad_b, self._bufs)

    def backward(self, x, params, grad_out, grad, grad_x=None) -> None:
        weights, biases = self._params(params)
        grad_w, grad_b = self._grads(grad)
        views = self._bufs.take(x.shape[0])
        block_bwd(x, weights, biases, grad_out, grad_w, grad_b, grad_x, views)

    def update_scratch(self) -> int:
        return 2

    def _update(self, params, grad, state) -> None:
        self._update_fn[state.kind](params, grad, state)

"""A grade bound to the CUDA core: ``_C.Plan`` objects for the forward and the training kernel
are made once here (shared-memory plan, warps, tile rows, kernel and its shared-memory
attribute, resident grid, workspace size), the workspace is allocated; each op then passes
``_C`` the plan, pointers, the row count and the current stream."""

from __future__ import annotations

import torch

from ..engine import Engine, buffer, count_plan


class CudaEngine(Engine):
    def __init__(self, ext, shape, device, input_dtype, rows, options):
        super().__init__("cuda", shape, device, input_dtype, rows, options, capturable=True)
        count_plan()
        self._ext = ext
        index = device.index if device.index is not None else torch.cuda.current_device()
        dims = {"d": shape.in_dim, "w": shape.width, "l": shape.hidden_layers, "c": shape.out_dim}
        self.fwd_plan = ext.Plan(device=index, rows=rows, train=False, **dims)
        self.train_plan = ext.Plan(device=index, rows=rows, train=True, **dims)
        self._index = index
        self._workspace = buffer((self.train_plan.workspace_floats,), torch.float32, device)
        self._loss = buffer((), torch.float32, device)
        self._x_bf16 = input_dtype == torch.bfloat16

    def _stream(self) -> int:
        return torch.cuda.current_stream(self.device).cuda_stream

    def forward(self, x, params, out, features_out=None) -> None:
        self._ext.block_fwd(
            self.fwd_plan,
            self._stream(),
            x.data_ptr(),
            self._x_bf16,
            params.data_ptr(),
            out.data_ptr(),
            0 if features_out is None else features_out.data_ptr(),
            features_out is not None and features_out.dtype == torch.bfloat16,
            x.shape[0],
        )

    def _train(self, x, params, grad, *, target=None, grad_out=None, grad_x=None, loss=None):
        self._ext.block_train(
            self.train_plan,
            self._stream(),
            x.data_ptr(),
            self._x_bf16,
            params.data_ptr(),
            0 if target is None else target.data_ptr(),
            0 if grad_out is None else grad_out.data_ptr(),
            0 if grad_x is None else grad_x.data_ptr(),
            grad_x is not None and grad_x.dtype == torch.bfloat16,
            grad.data_ptr(),
            0 if loss is None else loss.data_ptr(),
            self._workspace.data_ptr(),
            x.shape[0],
        )

    def step(self, x, y, params, grad):
        self._train(x, params, grad, target=y, loss=self._loss)
        return self._loss

    def backward(self, x, params, grad_out, grad, grad_x=None) -> None:
        self._train(x, params, grad, grad_out=grad_out, grad_x=grad_x)

    def _update(self, params, grad, state) -> None:
        common = (self._index, self._stream(), params.data_ptr(), grad.data_ptr())
        if state.kind == "gd":
            self._ext.gd_step(*common, params.numel(), state.lr)
            return
        self._ext.adam_step(
            *common,
            state.exp_avg.data_ptr(),
            state.exp_avg_sq.data_ptr(),
            params.numel(),
            state.step_size.data_ptr(),
            state.bias_correction2.data_ptr(),
            state.beta1,
            state.beta2,
            state.eps,
        )

    def describe(self) -> dict:
        return {**super().describe(), "plans": {
            "forward": self.fwd_plan.to_dict(), "train": self.train_plan.to_dict()
        }}  # fmt: skip

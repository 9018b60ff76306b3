"""A kernel backend for the self-check's tests: the torch backend under the name ``fake``, which
auto may pick for CPU tensors, behaving as ``$MGDL_FAST_TEST_FAKE_KERNEL`` says. The variable
is read when a step runs, so the self-check's child process (which inherits the environment)
misbehaves the same way:

- ``ok``: the torch backend's numbers; ``wrong``: gradients 1.5x too large;
- ``nan``: a NaN weight gives a finite loss (what ``fmaxf`` in a ReLU does);
- ``stale_adam``: Adam's update does nothing (the parameters stay as they were);
- ``raise``: the step raises; ``exit``: the process ends with status 3; ``signal``: the process
  dies of SIGSEGV (what an illegal address does to a CUDA program).
"""

from __future__ import annotations

import os
import signal

import torch

from mgdl_fast.backends.base import Capabilities
from mgdl_fast.backends.torch import TorchBackend, TorchEngine

MODE_ENV = "MGDL_FAST_TEST_FAKE_KERNEL"


class FakeEngine(TorchEngine):
    def step(self, x, y, params, grad):
        mode = os.environ.get(MODE_ENV, "ok")
        if mode == "raise":
            raise RuntimeError("injected kernel failure")
        if mode == "exit":
            os._exit(3)
        if mode == "signal":
            os.kill(os.getpid(), signal.SIGSEGV)
        if mode == "nan":
            params = torch.nan_to_num(params, nan=0.0)
        loss = super().step(x, y, params, grad)
        if mode == "wrong":
            grad.mul_(1.5)
        return loss

    def update(self, params, grad, state):
        if os.environ.get(MODE_ENV) != "stale_adam":
            super().update(params, grad, state)


class FakeKernelBackend(TorchBackend):
    name = "fake"
    _capabilities = Capabilities(
        device_types=("cpu",),
        auto_device_types=("cpu",),
        input_dtypes=(torch.float32, torch.bfloat16),
        precisions=("fp32",),
    )

    def bind(self, shape, device, input_dtype, rows, options):
        return self._bind(
            shape, device, input_dtype, rows, self.resolve_options(options, input_dtype)
        )

    def _bind(self, shape, device, input_dtype, rows, options):
        engine = FakeEngine(shape, device, input_dtype, rows, options)
        engine.backend = self.name
        return engine

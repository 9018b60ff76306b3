"""Per-grade optimizer state over the flat parameter vector, updated by a backend op."""

from __future__ import annotations

import torch

from .block import BlockParams
from .dispatch import resolve


class GradeOptimizer:
    """Adam (bias-corrected, as jax.example_libraries.optimizers.adam) or plain GD."""

    def __init__(
        self,
        kind: str,
        lr: float,
        params: BlockParams,
        *,
        backend: str | None = None,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ):
        self.kind, self.lr = kind, lr
        self.op = "adam_step" if kind == "adam" else "gd_step"
        self.backend_name, self._update = resolve(self.op, params.flat, params, backend=backend)
        self.betas, self.eps = (beta1, beta2), eps
        self.step_count = 0
        if kind == "adam":
            self.exp_avg = torch.zeros_like(params.flat)
            self.exp_avg_sq = torch.zeros_like(params.flat)

    def step(self, params: BlockParams, grad: BlockParams) -> None:
        self.step_count += 1
        if self.kind == "adam":
            self._update(
                params.flat,
                grad.flat,
                self.exp_avg,
                self.exp_avg_sq,
                step=self.step_count,
                lr=self.lr,
                beta1=self.betas[0],
                beta2=self.betas[1],
                eps=self.eps,
            )
        else:
            self._update(params.flat, grad.flat, lr=self.lr)

"""K epochs in a row with no host synchronisation, replayed from a CUDA graph where possible.

Between two record epochs the trainer needs nothing from the device, so the epochs there run
as one block: K times (objective step, optimizer update). Every op of a bound engine works in
buffers made at bind time, and the optimizer's step counter lives on the device, so on CUDA a
block of K epochs can be captured once in a CUDA graph and replayed: one launch instead of
K x (kernels + Python). Blocks of a new length are captured on first use, after at least one
eager epoch has run (lazy initialisation must not happen during capture).
"""

from __future__ import annotations

import torch

from ..block import FlatParams
from .optim import GradeOptimizer


class EpochRunner:
    """Runs ``k`` epochs of ``objective.step`` + ``optimizer.step`` on fixed tensors."""

    def __init__(
        self,
        objective,
        optimizer: GradeOptimizer,
        inputs,
        params: FlatParams,
        grad: FlatParams,
        *,
        cuda_graph: bool,
    ):
        self.objective, self.optimizer = objective, optimizer
        self.inputs, self.params, self.grad = inputs, params, grad
        self.cuda_graph = cuda_graph
        self._graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self._eager_epochs = 0
        device = params.flat.device
        # 0 while every loss so far was finite, NaN from the first one that was not: flag +
        # loss * 0 is NaN exactly for a NaN or infinite loss, and needs no host sync.
        self.nonfinite = torch.zeros((), device=device)
        self._zero = torch.zeros((), device=device)

    def _epoch(self) -> None:
        loss = self.objective.step(self.inputs, self.params, self.grad)
        self.nonfinite.addcmul_(loss.float(), self._zero)
        self.optimizer.step(self.params, self.grad)

    def run(self, k: int) -> None:
        """``k`` epochs; nothing here reads a value back from the device."""
        if not self.cuda_graph or self._eager_epochs == 0:
            for _ in range(k):
                self._epoch()
            self._eager_epochs += k
            return
        graph = self._graphs.get(k)
        if graph is None:
            graph = self._graphs[k] = self._capture(k)
        graph.replay()

    def _capture(self, k: int) -> torch.cuda.CUDAGraph:
        """Record (not run) ``k`` epochs; torch.cuda.graph captures on a side stream."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.device(self.params.flat.device), torch.cuda.graph(graph):
            for _ in range(k):
                self._epoch()
        return graph

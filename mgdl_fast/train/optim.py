"""Per-grade optimizer: state on the device, updated by the grade's bound engine."""

from __future__ import annotations

from ..backends.engine import Engine
from ..block import FlatParams


class GradeOptimizer:
    """Adam (bias-corrected, as jax.example_libraries.optimizers.adam) or plain GD over a
    ``[numel]`` flat parameter vector (one grade, or every subnet of an MSDL model).

    The step counter and the bias corrections live on the device (``OptimState``), so
    ``step`` never waits for the host and a CUDA graph of K steps replays correctly.
    """

    def __init__(
        self,
        engine: Engine,
        kind: str,
        lr: float,
        numel: int,
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ):
        self.engine, self.kind, self.lr = engine, kind, lr
        hyper = {"beta1": beta1, "beta2": beta2, "eps": eps} if kind == "adam" else {}
        self.state = engine.optimizer_state(kind, lr, numel, **hyper)

    def step(self, params: FlatParams, grad: FlatParams) -> None:
        self.engine.update(params.flat, grad.flat, self.state)

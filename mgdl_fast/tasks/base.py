"""What the trainer needs from a task and its objective: the protocols front ends implement.

A task holds the data as named splits (``train`` is required; ``val`` and ``test`` are
optional). An objective is what a grade minimises over the task: the trainer binds the grade's
engine, hands it to ``start_grade``, then calls ``step`` every epoch and ``record`` at record
epochs. ``GradeInputs`` is what both read the grade's inputs from: coordinates for grade 1, the
frozen grades' cached features after that.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import torch

if TYPE_CHECKING:
    from ..backends.engine import Engine
    from ..block import BlockParams
    from ..train.history import MetricLog


@dataclass(frozen=True)
class MemoryTerms:
    """What a task holds, for the memory planner (``train.memory``): the rows of each split of
    an ``height x width`` image (all ranks together), and the objective's fp32 arrays per
    channel: values per split row (a residual) and per pixel (image-space arrays of a loss)."""

    splits: Callable[[int, int], dict[str, int]]
    objective_per_row: int = 0
    objective_per_pixel: int = 0


@dataclass
class Split:
    """Inputs ``x [N, D]``, targets ``y [N, C]``, and the ``(rows, cols)`` they tile."""

    x: torch.Tensor
    y: torch.Tensor
    grid: tuple[int, int]


@runtime_checkable
class GradeInputs(Protocol):
    """The current grade's inputs per split."""

    @property
    def dtype(self) -> torch.dtype: ...

    def get(self, split: str) -> torch.Tensor:
        """``[N, D]`` inputs of ``split`` (coordinates or cached features)."""
        ...

    def rows(self, split: str) -> int: ...


@runtime_checkable
class Task(Protocol):
    """Data to fit: ``splits`` by name (at least ``train``), the input and output dims, and
    ``shape``, the layout a reconstruction takes (``[H, W, C]`` for images)."""

    name: str
    splits: dict[str, Split]
    shape: tuple[int, ...]

    @property
    def in_dim(self) -> int: ...

    @property
    def out_dim(self) -> int: ...


@runtime_checkable
class Objective(Protocol):
    """What one grade minimises.

    ``splits``: the task splits the trainer caches inputs for; ``ops``: the engine ops the
    objective calls (recorded per grade); ``capturable``: its ``step`` only calls engine ops
    on fixed tensors, so K epochs can be captured in a CUDA graph.
    """

    splits: tuple[str, ...]
    ops: tuple[str, ...]
    capturable: bool

    def start_grade(self, engine: Engine, inputs: GradeInputs, params: BlockParams) -> None:
        """A new grade bound to ``engine``: check operands once, allocate what steps need."""
        ...

    def step(self, inputs: GradeInputs, params: BlockParams, grad: BlockParams) -> torch.Tensor:
        """Write dL/dparams into ``grad``; return the loss as a 0-dim device tensor."""
        ...

    def record(
        self, inputs: GradeInputs, params: BlockParams, *, with_test: bool
    ) -> dict[str, torch.Tensor]:
        """Metrics to log now (0-dim device tensors); must include ``train_loss``."""
        ...

    def postfix(self, log: MetricLog) -> dict[str, str]:
        """What the progress bar shows, from the flushed log."""
        ...

    def grade_scale(self) -> float:
        """The factor the just-trained grade's output is multiplied by in the prediction."""
        ...

    def absorb(self, outputs: dict[str, torch.Tensor]) -> None:
        """Take a frozen grade's outputs ``[N, C]`` per split into the running state."""
        ...

    def final_metrics(self) -> dict[str, float]:
        """Metrics of the accumulated prediction after the latest grade."""
        ...

    def reconstruction(self) -> np.ndarray:
        """The accumulated prediction, shaped like ``task.shape``."""
        ...

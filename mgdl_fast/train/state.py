"""What a run must keep to continue bit for bit, and when it keeps it.

``TrainingState`` is everything a resumed run needs: the finished grades and their records,
the grade in progress (``GradeProgress``: parameters, optimizer state, early-stopping state,
metric log, time spent) and the objective's own state (the TV variable ``u``). ``Checkpointer``
decides when a grade saves its progress (every N epochs, or after about a minute of work) and
turns SIGTERM/SIGINT into a save at the next block boundary followed by ``Interrupted``.
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import torch

from ..errors import MGDLError
from .budget import BudgetChoice
from .history import GradeRecord
from .model import MultiGradeModel

DEFAULT_CHECKPOINT_S = 60.0


class Interrupted(MGDLError):
    """Training stopped on a signal after saving its progress."""

    def __init__(self, signum: int, grade: int, epoch: int):
        name = signal.Signals(signum).name
        super().__init__(
            f"interrupted by {name} in grade {grade} after epoch {epoch}; progress saved, "
            "continue with --resume"
        )
        self.signum, self.grade, self.epoch = signum, grade, epoch


@dataclass
class GradeProgress:
    """Grade ``grade`` (1-based) after its epoch ``epoch`` (0-based; -1 before the first);
    ``budget``: its epochs chosen under a time budget (None: none chosen yet, or no budget)."""

    grade: int
    epoch: int
    params: torch.Tensor
    optimizer: dict[str, torch.Tensor]
    stop_rule: dict
    series: dict[str, tuple[list[int], list[float]]]
    elapsed_s: float
    lr: float
    retries: list[dict] = field(default_factory=list)
    budget: BudgetChoice | None = None


@dataclass
class TrainingState:
    """A run's finished grades, their records, the grade in progress, the objective state and
    torch's CPU generator state."""

    model: MultiGradeModel
    records: list[GradeRecord]
    current: GradeProgress | None = None
    objective: dict[str, torch.Tensor] = field(default_factory=dict)
    rng: torch.Tensor | None = None

    def to(self, device: torch.device | str) -> TrainingState:
        """The same state with its tensors on ``device`` (the RNG state stays on the CPU)."""
        current = self.current
        if current is not None:
            current = replace(
                current,
                params=current.params.to(device),
                optimizer={k: v.to(device) for k, v in current.optimizer.items()},
            )
        model = self.model.to(device) if len(self.model) else self.model
        objective = {k: v.to(device) for k, v in self.objective.items()}
        return TrainingState(model, self.records, current, objective, self.rng)


class Checkpointer:
    """Saves the run (``save(TrainingState)``) with its grade in progress every
    ``every_epochs`` epochs when given, else after ``every_s`` seconds of work; and at once
    after a SIGTERM/SIGINT."""

    def __init__(
        self,
        save: Callable[[TrainingState], None],
        *,
        every_epochs: int | None = None,
        every_s: float = DEFAULT_CHECKPOINT_S,
    ):
        self.save, self.every_epochs, self.every_s = save, every_epochs, every_s
        self.interrupted: int | None = None
        self._last = time.monotonic()

    def next_epoch(self, epoch: int) -> int | None:
        """The first epoch >= ``epoch`` after which an epoch-interval checkpoint is due."""
        if self.every_epochs is None:
            return None
        n = self.every_epochs
        return -(-(epoch + 1) // n) * n - 1

    def due(self, epoch: int) -> bool:
        if self.interrupted is not None:
            return True
        if self.every_epochs is not None:
            return (epoch + 1) % self.every_epochs == 0
        return time.monotonic() - self._last >= self.every_s

    def saved(self) -> None:
        self._last = time.monotonic()

    @contextlib.contextmanager
    def catching_signals(self) -> Iterator[None]:
        """SIGTERM and a first SIGINT set ``interrupted``; a second SIGINT interrupts at once."""

        def handler(signum, frame):
            if self.interrupted is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self.interrupted = signum

        previous = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for s, h in previous.items():
                signal.signal(s, h)

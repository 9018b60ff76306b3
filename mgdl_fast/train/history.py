"""Training records: metrics logged as device tensors and read back in batches."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

import torch


class MetricLog:
    """Named series of (epoch, value). Values arrive as 0-dim device tensors and are copied to
    the host together on ``flush()``, so recording never forces a device sync per epoch."""

    def __init__(self, series: dict[str, tuple[list[int], list[float]]] | None = None):
        self.series: dict[str, tuple[list[int], list[float]]] = {
            name: (list(e), list(v)) for name, (e, v) in (series or {}).items()
        }
        self._pending: list[tuple[str, int, torch.Tensor]] = []

    def add(self, name: str, epoch: int, value: torch.Tensor) -> None:
        self._pending.append((name, epoch, value.detach().reshape(())))

    def flush(self) -> list[tuple[str, int, float]]:
        """Read the pending values back (one host sync); returns them as (name, epoch, value)."""
        if not self._pending:
            return []
        values = torch.stack([v.float() for _, _, v in self._pending]).tolist()
        flushed = []
        for (name, epoch, _), value in zip(self._pending, values):
            epochs, vals = self.series.setdefault(name, ([], []))
            epochs.append(epoch)
            vals.append(value)
            flushed.append((name, epoch, value))
        self._pending.clear()
        return flushed

    def values(self, name: str) -> list[float]:
        return self.series.get(name, ([], []))[1]

    def last(self, name: str) -> float:
        values = self.values(name)
        return values[-1] if values else math.nan


@dataclass
class GradeRecord:
    """What training one grade did: curves, how it ended, its wall time, final metrics and
    the engine it was bound to (backend, options, self-check: ``Engine.describe``)."""

    grade: int
    shape: dict
    epochs_run: int
    stop_reason: str
    time_s: float
    curves: dict[str, dict[str, list]] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    backend: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    retries: list[dict] = field(default_factory=list)
    health: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> GradeRecord:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})

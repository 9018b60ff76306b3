"""What a run leaves in its output directory, written as each grade finishes:

- ``grade_<k>.png``: the reconstruction after grade k (8-bit, clipped to [0, 1] for display);
- ``reconstruction.npy``: the final reconstruction as float32 ``[H, W, C]``, unclipped;
- ``metrics.json``: configuration, versions, backends, per-grade curves, times and metrics;
- ``curves.png``: loss and PSNR against epochs with grade boundaries;
- ``model.safetensors`` + ``model.json``: the checkpoint (every finished grade).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from ..train.history import GradeRecord
from ..train.trainer import FitResult
from .checkpoint import save_checkpoint
from .curves import plot_curves
from .images import save_png

CHECKPOINT_STEM = "model"


class RunWriter:
    """Writes a run's outputs into ``out_dir`` after every grade and at the end."""

    def __init__(self, out_dir: str | Path, config: dict, env: dict, title: str):
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.config, self.env, self.title = config, env, title
        self.started = time.time()

    def grade_done(self, result: FitResult, reconstruction: np.ndarray) -> None:
        """After grade k: its reconstruction PNG, the checkpoint so far and metrics.json."""
        grade = len(result.model)
        save_png(self.out_dir / f"grade_{grade}.png", reconstruction)
        np.save(self.out_dir / "reconstruction.npy", reconstruction.astype(np.float32))
        save_checkpoint(self.out_dir / CHECKPOINT_STEM, result.model, self.config)
        self.write_metrics(result, status="running")

    def finish(self, result: FitResult) -> None:
        status = "diverged" if result.diverged else "complete"
        self.write_metrics(result, status=status)
        if result.records:
            plot_curves(result.records, self.out_dir / "curves.png", self.title)

    def write_metrics(self, result: FitResult, status: str) -> None:
        metrics = {
            "status": status,
            "command": sys.argv,
            "config": self.config,
            "environment": self.env,
            "backends": result.backends,
            "grade_backends": [r.backend for r in result.records],
            "total_time_s": sum(r.time_s for r in result.records),
            "grades": [r.to_dict() for r in result.records],
        }
        if result.diverged is not None:
            metrics["diverged"] = str(result.diverged)
        (self.out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))


def read_records(out_dir: str | Path) -> tuple[dict, list[GradeRecord]]:
    """The config and grade records of an earlier run's metrics.json (for --resume)."""
    metrics = json.loads((Path(out_dir) / "metrics.json").read_text())
    return metrics["config"], [GradeRecord.from_dict(g) for g in metrics["grades"]]

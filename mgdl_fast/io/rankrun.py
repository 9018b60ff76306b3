"""A run directory as every rank of a sharded run calls it (``mgdl_fast.distributed``).

Rank 0 alone opens, locks and writes the directory (``io.rundir.RunDirectory``); ``RankRun``
is what each rank holds: rank 0 does each call (a failure there is raised on every rank, so no
rank waits for one that left), the others nothing. With one process it is the directory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..distributed import World
from ..train.features import WorkDir
from ..train.state import TrainingState
from ..train.trainer import FitResult
from .rundir import RunDirectory


class RankRun:
    """``run_dir`` on rank 0 (None elsewhere) does every call, whose failure every rank raises
    (``World.on_main``). ``path`` is the directory's path on every rank."""

    def __init__(self, run_dir: RunDirectory | None, path: Path, world: World):
        self.run_dir, self.path, self.world = run_dir, path, world

    def _main(self, call):
        return self.world.on_main(lambda: call(self.run_dir))

    @property
    def progress_log(self) -> Path | None:
        return self._main(lambda d: d.progress_log)

    def work_dir(self) -> WorkDir | None:
        """Where features on disk go: a scratch folder of the run that records every file
        it makes (rank 0); None elsewhere (the trainer gives other ranks a temporary one)."""
        if self.run_dir is None:
            return None
        return WorkDir(self.run_dir.features, claim=self.run_dir.claim)

    def load_state(self, device) -> tuple[TrainingState | None, dict | None]:
        """Rank 0's current state and config, on every rank (see RunDirectory.load_state)."""
        return self.world.broadcast(self._main(lambda d: d.load_state(device)))

    def begin(self, config: dict) -> None:
        self._main(lambda d: d.begin(config))

    def save_state(self, state: TrainingState, config: dict) -> None:
        self._main(lambda d: d.save_state(state, config))

    def write_description(self, text: str) -> None:
        self._main(lambda d: d.write_description(text))

    def write_observation(self, pixels: np.ndarray) -> None:
        self._main(lambda d: d.write_observation(pixels))

    def grade_done(self, result: FitResult, reconstruction: np.ndarray, metrics: dict) -> None:
        self._main(lambda d: d.grade_done(result, reconstruction, metrics))

    def write_metrics(self, metrics: dict) -> None:
        self._main(lambda d: d.write_metrics(metrics))

    def write_curves(self, result: FitResult, title: str) -> None:
        self._main(lambda d: d.write_curves(result, title))

    def commit(self) -> None:
        self._main(lambda d: d.commit())


__all__ = ["RankRun"]

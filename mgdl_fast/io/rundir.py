"""A run's output directory: claimed by one process, every file written atomically, and a
manifest (written last) that says which files make up the run and what their checksums are.

What a run leaves, written as each grade finishes (and the state also during a grade):

- ``grade_<k>.png``: the reconstruction after grade k (8-bit, clipped to [0, 1] for display);
- ``reconstruction.npy``: the latest reconstruction as float32 ``[H, W, C]``, unclipped;
- ``metrics.json``: configuration, versions, backends, per-grade curves, times and metrics;
- ``curves.png``: loss and PSNR against epochs with grade boundaries (at the end);
- ``model.safetensors`` + ``model.json``: the finished grades (what ``predict`` reads);
- ``state-<n>.safetensors``: everything ``--resume`` needs (finished grades, the grade in
  progress, optimizer and early-stopping state, the TV variable, RNG state);
- ``progress.jsonl``: one JSON line per recorded value and event, for front ends to follow;
- ``manifest.json``: the files above with their SHA-256, and which state file is current.

The manifest is the commit point: a crash before it is rewritten leaves the previous manifest,
whose state file still exists, so ``--resume`` continues from a consistent point and rewrites
the other files; ``predict`` refuses model files that do not match it.

In a run sharded over ranks (``train.distributed``), rank 0 alone opens, locks and writes the
directory; ``RankRun`` is the directory as every rank calls it: rank 0 does each write (a
failure there is raised on every rank, so no rank waits for one that left), the others nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..errors import InputError, MGDLError
from ..train.distributed import World, current
from ..train.state import TrainingState
from ..train.trainer import FitResult
from . import atomic
from .checkpoint import MANIFEST, save_checkpoint
from .curves import plot_curves
from .images import save_png
from .state import load_state, save_state

CHECKPOINT_STEM = "model"
LOCK = ".lock"
PROGRESS = "progress.jsonl"
# What --overwrite removes (objective_state.npz: the TV state file of runs before 0.2).
RUN_FILES = ("grade_*.png", "reconstruction.npy", "metrics.json", "curves.png", "observed.png",
             "model.safetensors", "model.json", "state-*.safetensors", PROGRESS, MANIFEST,
             "objective_state.npz")  # fmt: skip


class RunDirectory:
    """The directory of one run. ``mode`` "new" refuses a directory that holds a run,
    "overwrite" removes that run's files first, "resume" requires one. Raises InputError (one
    line) when the path is a file, cannot be created, is not writable, or is in use by another
    process (an advisory lock held until ``close``)."""

    def __init__(self, path: str | Path, *, mode: str = "new"):
        self.path = Path(path)
        self._lock_fd = -1
        if not current().is_main:
            raise MGDLError("only rank 0 of a sharded run opens its run directory")
        if self.path.exists() and not self.path.is_dir():
            raise InputError(f"--out {self.path} is a file, not a directory")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create --out {self.path}: {exc.strerror or exc}") from None
        self._lock_fd = self._lock()
        try:
            self._check_writable()
            self._start(mode)
        except BaseException:
            self.close()
            raise

    def _lock(self) -> int:
        lock = self.path / LOCK
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"--out {self.path} is not writable: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise InputError(
                f"{self.path} is in use by another mgdl-fast process (pid {holder}); wait for "
                "it to finish or choose another --out"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return fd

    def close(self) -> None:
        """Release the directory (the lock); safe to call twice."""
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def _check_writable(self) -> None:
        try:
            atomic.write_text(self.path / ".writable", "")
            (self.path / ".writable").unlink()
        except (atomic.WriteError, OSError) as exc:
            raise InputError(f"--out {self.path} is not writable: {exc}") from None
        for leftover in self.path.glob(".*.tmp*"):
            leftover.unlink(missing_ok=True)

    def holds_run(self) -> bool:
        return any(
            (self.path / name).is_file() for name in (MANIFEST, "metrics.json", "model.json")
        )

    def _start(self, mode: str) -> None:
        exists = self.holds_run()
        if mode == "new" and exists:
            raise InputError(
                f"{self.path} already holds a run; pass --resume to continue it or "
                "--overwrite to replace it"
            )
        if mode == "resume" and not (self.path / MANIFEST).is_file():
            raise InputError(f"--resume: no run to resume in {self.path} (no {MANIFEST})")
        if mode == "overwrite":
            for pattern in RUN_FILES:
                for old in self.path.glob(pattern):
                    old.unlink()
        self.manifest = self._read_manifest() if mode == "resume" else {"files": {}, "state": None}

    def _read_manifest(self) -> dict:
        try:
            manifest = json.loads((self.path / MANIFEST).read_text())
            files, _ = manifest["files"], manifest["state"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(f"cannot read {self.path / MANIFEST}: {exc}") from None
        if not isinstance(files, dict):
            raise InputError(f"{self.path / MANIFEST} is malformed")
        return manifest

    @property
    def progress_log(self) -> Path:
        return self.path / PROGRESS

    def _wrote(self, name: str) -> None:
        path = self.path / name
        self.manifest["files"][name] = {"sha256": atomic.sha256(path), "bytes": path.stat().st_size}

    def commit(self) -> None:
        """Write the manifest: the run is now the files it lists."""
        atomic.write_text(self.path / MANIFEST, json.dumps(self.manifest, indent=1))

    def save_state(self, state: TrainingState, config: dict) -> None:
        """A new state file, then the manifest naming it; older state files go after."""
        previous = self.manifest.get("state")
        number = int(previous.split("-")[1].split(".")[0]) + 1 if previous else 1
        name = f"state-{number:06d}.safetensors"
        save_state(self.path / name, state, config)
        self._wrote(name)
        self.manifest["state"] = name
        if previous:
            self.manifest["files"].pop(previous, None)
        self.commit()
        for old in self.path.glob("state-*.safetensors"):
            if old.name != name:
                old.unlink(missing_ok=True)

    def load_state(self, device) -> tuple[TrainingState, dict]:
        """The current state (checked against the manifest) and the run's config."""
        name = self.manifest.get("state")
        if not name:
            raise InputError(f"--resume: {self.path} holds no saved state yet")
        path = self.path / name
        entry = self.manifest["files"].get(name)
        if not path.is_file() or entry is None or atomic.sha256(path) != entry["sha256"]:
            raise InputError(f"--resume: {path} is missing or does not match {MANIFEST}")
        return load_state(path, device)

    def write_observation(self, pixels: np.ndarray) -> None:
        save_png_atomic(self.path / "observed.png", pixels)
        self._wrote("observed.png")

    def grade_done(self, result: FitResult, reconstruction: np.ndarray, metrics: dict) -> None:
        """After grade k: its PNG, the reconstruction, the model files and metrics.json."""
        name = f"grade_{len(result.model)}.png"
        save_png_atomic(self.path / name, reconstruction)
        atomic.atomic_write(
            self.path / "reconstruction.npy",
            lambda tmp: np.save(tmp, reconstruction.astype(np.float32, copy=False)),
        )
        save_checkpoint(self.path / CHECKPOINT_STEM, result.model, metrics["config"])
        self.write_metrics(metrics)
        for written in (name, "reconstruction.npy", "model.safetensors", "model.json"):
            self._wrote(written)

    def write_metrics(self, metrics: dict) -> None:
        atomic.write_text(self.path / "metrics.json", json.dumps(metrics, indent=2))
        self._wrote("metrics.json")

    def write_curves(self, result: FitResult, title: str) -> None:
        if result.records:
            atomic.atomic_write(
                self.path / "curves.png", lambda tmp: plot_curves(result.records, tmp, title)
            )
            self._wrote("curves.png")


class RankRun:
    """A run directory as each rank calls it: ``run_dir`` on rank 0 (None elsewhere) does every
    call, whose failure every rank raises (``World.on_main``); with one process, the directory
    itself. ``path`` is the directory's path on every rank."""

    def __init__(self, run_dir: RunDirectory | None, path: Path, world: World):
        self.run_dir, self.path, self.world = run_dir, path, world

    def _main(self, call):
        return self.world.on_main(lambda: call(self.run_dir))

    @property
    def progress_log(self) -> Path | None:
        return self.run_dir.progress_log if self.run_dir is not None else None

    def load_state(self, device) -> tuple[TrainingState, dict]:
        """Rank 0's current state and config, on every rank."""
        return self.world.broadcast(self._main(lambda d: d.load_state(device)))

    def save_state(self, state: TrainingState, config: dict) -> None:
        self._main(lambda d: d.save_state(state, config))

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


def save_png_atomic(path: Path, pixels: np.ndarray) -> None:
    atomic.atomic_write(path, lambda tmp: save_png(tmp, pixels))


def metrics_record(result: FitResult, config: dict, env: dict, status: str) -> dict:
    """metrics.json: the run's status, command, config, environment, backends and grades."""
    metrics = {
        "status": status,
        "command": sys.argv,
        "config": config,
        "environment": env,
        "backends": result.backends,
        "grade_backends": [r.backend for r in result.records],
        "total_time_s": sum(r.time_s for r in result.records),
        "grades": [r.to_dict() for r in result.records],
    }
    if result.diverged is not None:
        metrics["diverged"] = str(result.diverged)
    if result.grades_stop is not None:
        metrics["grades_stop"] = result.grades_stop
    return metrics

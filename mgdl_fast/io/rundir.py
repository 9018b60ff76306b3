"""A run's output directory: claimed by one process, owning only what it recorded writing,
every file written atomically, and a manifest that says which files make up the run.

What a run leaves, written as each grade finishes (and the state also during a grade):

- ``grade_<k>.png``: the reconstruction after grade k (8-bit, clipped to [0, 1] for display);
- ``reconstruction.npy``: the latest reconstruction as float32 ``[H, W, C]``, unclipped;
- ``metrics.json``: configuration, versions, backends, per-grade curves, times and metrics;
- ``curves.png``: loss and PSNR against epochs with grade boundaries (at the end);
- ``model.safetensors`` + ``model.json``: the finished grades (what ``predict`` reads);
- ``state-<n>.safetensors``: everything ``--resume`` needs (finished grades, the grade in
  progress, optimizer and early-stopping state, the TV variable, RNG state);
- ``progress.jsonl``: one JSON line per recorded value and event, for front ends to follow;
- ``manifest.json``: the files above with their SHA-256, the current state and the config;
- ``.mgdl_fast_run`` (the record of every name the run wrote, ``io.ownership``) and ``.lock``.

Ownership: a new run goes only into a new or empty directory, which it claims by creating its
record first; a directory holding anything else is refused with one line naming an entry.
``--overwrite`` and every cleanup remove only recorded names, after every check has passed
(``begin``); a user's files inside a run are kept, and a name the run would write that the
user holds is refused. No path of a run is used through a symbolic link.

The manifest is the commit point: a crash before it is rewritten leaves the previous manifest,
whose state file still exists, so ``--resume`` continues from a consistent point and rewrites
the other files; ``predict`` refuses model files that do not match it. The first manifest is
written before any output, so every directory a run leaves is one ``--resume`` accepts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

from ..distributed import current
from ..errors import InputError, MGDLError
from ..train.state import TrainingState
from ..train.trainer import FitResult
from . import atomic, ownership
from .checkpoint import checkpoint_contents, write_tensors
from .images import save_png
from .manifest import MANIFEST, new_manifest, read_manifest
from .ownership import RECORD, RunRecord, exists
from .schema import strict_dumps
from .state_file import load_state, write_state

CHECKPOINT_STEM = "model"
LOCK = ".lock"
PROGRESS = "progress.jsonl"
DESCRIPTION = "run.toml"
FEATURES = "features"
MODES = ("new", "overwrite", "resume")


class RunDirectory:
    """The directory of one run. ``mode`` "new" refuses a directory that holds a run,
    "overwrite" replaces that run's files (at ``begin``), "resume" requires one. Raises
    InputError (one line) when the path is a file, cannot be created, is not writable, holds
    files mgdl-fast did not write, or is in use by another process (an advisory lock held
    until ``close``). A run that never ``begin``s leaves nothing it created behind."""

    def __init__(self, path: str | Path, *, mode: str = "new"):
        if not current().is_main:
            raise MGDLError("only rank 0 of a sharded run opens its run directory")
        assert mode in MODES, mode
        self.path, self.mode = Path(path), mode
        self._lock_fd, self.began, self.record = -1, False, None
        self._made: list[Path] = []  # created by this process: undone unless the run begins
        try:
            self._open()
            self._claim()
            self._lock()
            if mode == "new" and not self._fresh:
                raise InputError(
                    f"{self.path} already holds a run; pass --resume to continue it or "
                    "--overwrite to replace it"
                )
            self.manifest = self._manifest()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        path = self.path
        if exists(path) and not path.is_dir():
            raise InputError(f"--out {path} is a file, not a directory")
        if not exists(path):
            if self.mode == "resume":
                raise InputError(f"--resume: no run to resume in {path} (it does not exist)")
            missing = [p for p in (path, *path.parents) if not exists(p)]
            try:
                path.mkdir(parents=True)
            except OSError as exc:
                raise InputError(f"cannot create --out {path}: {exc.strerror or exc}") from None
            self._made += reversed(missing)
        try:
            fd, probe = tempfile.mkstemp(prefix=".mgdl_fast_probe", dir=path)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise InputError(f"--out {path} is not writable: {exc.strerror or exc}") from None

    def _claim(self) -> None:
        """Read the run's record, or claim an empty directory with a new one."""
        self._fresh = False
        self.record = RunRecord.read(self.path)
        if self.record is not None:
            return
        if ownership.is_file(self.path, MANIFEST) and self._legacy_manifest() is not None:
            self.record = self._adopt()
            return
        foreign = ownership.foreign_entry(self.path, None)
        if foreign is not None:
            raise InputError(
                f"--out {self.path} holds files mgdl-fast did not write (e.g. {foreign.name}); "
                "choose a new or empty directory"
            )
        if self.mode == "resume":
            raise InputError(f"--resume: no run to resume in {self.path} (it is empty)")
        try:
            self.record = RunRecord.create(self.path)
        except FileExistsError:
            raise InputError(
                f"{self.path} is in use by another mgdl-fast process; wait for it to finish or "
                "choose another --out"
            ) from None
        self._made.append(self.path / RECORD)
        self._fresh = True

    def _legacy_manifest(self) -> dict | None:
        """The manifest of a run written before runs kept a record; None when the file is
        not a manifest (then it is the user's, like any other file)."""
        try:
            return read_manifest(self.path)
        except InputError:
            return None

    def _adopt(self) -> RunRecord:
        """A run written before runs kept a record: its manifest's files are its own."""
        manifest = read_manifest(self.path)
        record = RunRecord.create(self.path)
        self._made.append(self.path / RECORD)
        for name in (MANIFEST, *manifest["files"], LOCK, PROGRESS):
            record.own(name, "state" if name == manifest["state"] else "file")
        return record

    def _lock(self) -> None:
        assert self.record is not None
        lock = self._target(LOCK)
        created = not exists(lock)
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as exc:
            raise InputError(f"--out {self.path} is not writable: {exc.strerror}") from None
        if created:
            self._made.append(lock)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise InputError(
                f"{self.path} is in use by another mgdl-fast process (pid {holder}); wait for "
                "it to finish or choose another --out"
            ) from None
        self._lock_fd = fd
        try:
            os.ftruncate(fd, 0)
            pid = str(os.getpid()).encode()
            with atomic.guarded(LOCK):
                os.pwrite(fd, pid, 0)
        except OSError as exc:
            raise atomic.WriteError(f"cannot write {lock}: {atomic.reason(exc)}") from None

    def _manifest(self) -> dict:
        if self.mode == "resume" and ownership.is_file(self.path, MANIFEST):
            return read_manifest(self.path)
        return new_manifest()

    def close(self) -> None:
        """Release the directory (the lock); a run that never began removes what this
        process created (its record, lock and directories). Safe to call twice."""
        if self.record is not None and self.began and self._lock_fd >= 0:
            self._forget_removed()
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1
        if self.record is not None:
            self.record.close()
        if not self.began:
            for made in reversed(self._made):
                if made.is_dir() and not made.is_symlink():
                    if not any(made.iterdir()):
                        made.rmdir()
                else:
                    made.unlink(missing_ok=True)
        self._made = []

    def _forget_removed(self) -> None:
        """The run is over: names it removed (its scratch folder) are no longer its own, so a
        user's file there later is never taken for the run's. Best effort: a record that
        cannot be rewritten keeps listing them, which only keeps more files."""
        assert self.record is not None
        with contextlib.suppress(InputError, OSError):
            self.record.compact()

    def begin(self, config: dict) -> None:
        """Every check has passed: clear what the run left that is not part of it (a replaced
        run's files; a resumed run's temporary and scratch files and old states) and write
        the manifest with ``config`` before any other file."""
        assert self.record is not None
        if self.mode == "overwrite":
            self.manifest = new_manifest()
            keep = {LOCK, RECORD}
            for name in self.record.named("file", "state"):
                if name not in keep:
                    self.record.remove(name)
        current_state = self.manifest["state"]
        stale = [n for n in self.record.named("state") if n != current_state]
        for name in (*self.record.named("temp", "scratch"), *stale):
            self.record.remove(name)
        self.record.remove_all("dir")
        self.record.compact()
        if config.get("train", {}).get("feature_store") == "disk":
            self._target(FEATURES, "dir")  # a user's own features/ is refused, not used
        self.manifest["config"] = config
        self.commit()
        self.began = True
        self._made = []

    def _target(self, name: str, kind: str = "file") -> Path:
        """The path of run file ``name``, recorded as the run's before it is created; a name
        the user holds there is refused."""
        assert self.record is not None
        path = ownership.inside(self.path, name)
        if not self.record.owns(name) and exists(path):
            raise InputError(
                f"{path} was not written by mgdl-fast and is kept; move it away or choose "
                "another --out"
            )
        self.record.own(name, kind)
        return path

    def _write(self, name: str, write, kind: str = "file") -> None:
        path = self._target(name, kind)
        tmp = self._target(atomic.temp_name(name), "temp")
        atomic.atomic_write(path, write, tmp=tmp)
        self.manifest["files"][name] = {"sha256": atomic.sha256(path),
                                        "bytes": path.stat().st_size}  # fmt: skip

    def claim(self, path: Path, kind: str) -> Path:
        """Record ``path`` (inside the run) as the run's ``kind`` before it is created."""
        return self._target(path.relative_to(self.path).as_posix(), kind)

    @property
    def progress_log(self) -> Path:
        return self._target(PROGRESS)

    @property
    def features(self) -> Path:
        """Where features on disk go (a scratch folder the run makes and removes)."""
        return self.path / FEATURES

    def commit(self) -> None:
        """Write the manifest: the run is now the files it lists."""
        text = strict_dumps(self.manifest, indent=1)
        atomic.write_text(self._target(MANIFEST), text, tmp=self._target(
            atomic.temp_name(MANIFEST), "temp"))  # fmt: skip

    def save_state(self, state: TrainingState, config: dict) -> None:
        """A new state file, then the manifest naming it; the previous state goes after."""
        previous = self.manifest.get("state")
        number = int(previous.split("-")[1].split(".")[0]) + 1 if previous else 1
        name = f"state-{number:06d}.safetensors"
        self._write(name, lambda tmp: write_state(tmp, state, config), kind="state")
        self.manifest["state"] = name
        if previous:
            self.manifest["files"].pop(previous, None)
        self.commit()
        if previous and self.record is not None:
            self.record.remove(previous)

    def load_state(self, device) -> tuple[TrainingState | None, dict | None]:
        """The current state (checked against the manifest) and the run's config; (None,
        config) when the run saved no state yet (config None: not even its first manifest)."""
        name = self.manifest.get("state")
        if not name:
            return None, self.manifest.get("config")
        path = ownership.inside(self.path, name)
        entry = self.manifest["files"][name]
        if not ownership.is_file(self.path, name) or atomic.sha256(path) != entry["sha256"]:
            raise InputError(
                f"--resume: {path} is missing or does not match {MANIFEST}; the run cannot "
                "continue from it (start again with --overwrite)"
            )
        return load_state(path, device)

    def write_description(self, text: str) -> None:
        """``run.toml``: the run's resolved description (``mgdl_fast.run``), which reruns it."""
        self._write(DESCRIPTION, lambda tmp: tmp.write_text(text))

    def write_observation(self, pixels: np.ndarray) -> None:
        self._write("observed.png", lambda tmp: save_png(tmp, pixels))

    def grade_done(self, result: FitResult, reconstruction: np.ndarray, metrics: dict) -> None:
        """After grade k: its PNG, the reconstruction, the model files and metrics.json."""
        self._write(f"grade_{len(result.model)}.png", lambda tmp: save_png(tmp, reconstruction))
        self._write(
            "reconstruction.npy",
            lambda tmp: np.save(tmp, reconstruction.astype(np.float32, copy=False)),
        )
        tensors, text = checkpoint_contents(result.model, metrics["config"])
        self._write(f"{CHECKPOINT_STEM}.safetensors", lambda tmp: write_tensors(tmp, tensors))
        self._write(f"{CHECKPOINT_STEM}.json", lambda tmp: tmp.write_text(text))
        self.write_metrics(metrics)

    def write_metrics(self, metrics: dict) -> None:
        text = strict_dumps(metrics, indent=2)
        self._write("metrics.json", lambda tmp: tmp.write_text(text))

    def write_curves(self, result: FitResult, title: str) -> None:
        # matplotlib is imported only here: importing mgdl_fast must not load it (or set its
        # backend for the user's process).
        from .curves import plot_curves

        if result.records:
            self._write("curves.png", lambda tmp: plot_curves(result.records, tmp, title))


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


__all__ = [
    "CHECKPOINT_STEM",
    "DESCRIPTION",
    "LOCK",
    "MANIFEST",
    "PROGRESS",
    "RunDirectory",
    "metrics_record",
]

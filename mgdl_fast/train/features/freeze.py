"""What a grade reads and where a freeze writes: grade 1's inputs (in memory, or made per
chunk when streaming), the store of the next grade's features (memory, disk or pinned host
memory; see ``TrainConfig.feature_store``), and the freeze itself."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from ...backends.engine import Engine
from ...distributed import SINGLE
from ...io.atomic import WriteError
from ..config import TrainConfig
from .inputs import FeatureCache, GeneratedInputs, MemoryStore, RecomputedFeatures, freeze_grade
from .stores import DiskFeatures, HostFeatures


def grade_inputs(task, splits: tuple[str, ...], encoding, cfg: TrainConfig):
    """Grade 1's inputs: the (encoded) coordinates of every split, in memory, or made per
    chunk when streaming (``GeneratedInputs``)."""
    device = cfg.torch_device()
    if encoding is not None:
        encoding = encoding.to(device)

    def make(split: str, start: int, stop: int, out: torch.Tensor | None = None) -> torch.Tensor:
        x = task.splits[split].x
        x = task.coords(split, start, stop) if x is None else x[start:stop]
        if encoding is None:
            return x if out is None else out.copy_(x)
        return encoding(x, out=out)

    rows = {name: task.splits[name].y.shape[0] for name in splits}
    if cfg.stream:
        width = encoding.out_dim if encoding is not None else None
        return GeneratedInputs(rows, make, reuse_width=width, device=device)
    coords = {}
    for name in splits:
        x = task.splits[name].x
        if encoding is not None or x is None:
            # Encoded (or generated) once per split, in chunks, like features.
            x = torch.empty(
                rows[name], encoding.out_dim if encoding else task.in_dim, device=device
            )
            for start in range(0, rows[name], cfg.chunk_size):
                stop = min(start + cfg.chunk_size, rows[name])
                make(name, start, stop, out=x[start:stop])
        coords[name] = x
    if not cfg.feature_cache:
        return RecomputedFeatures(coords, cfg.feature_dtype(device))
    return FeatureCache(coords)


class _NullStore:
    """Where a freeze without a cache writes its features: nowhere (one scratch chunk)."""

    def __init__(self, rows: int, width: int, device):
        self._scratch = torch.empty(rows, width, device=device)

    def writable(self, split: str, start: int, n: int) -> torch.Tensor:
        return self._scratch[:n]

    def finish(self) -> None:
        return None


def new_store(cfg: TrainConfig, inputs, splits, engine: Engine, width: int, work, grade: int):
    """Where a freeze puts the next grade's features (see TrainConfig.feature_store); ``work``
    (a ``WorkDir``) makes its directory only when the store is on disk."""
    device = engine.device
    if isinstance(inputs, RecomputedFeatures):
        return _NullStore(engine.rows, width, device)
    rows, dtype = {s: inputs.rows(s) for s in splits}, cfg.feature_dtype(device)
    if cfg.feature_store == "disk":
        folder = work.path / f"features-grade{grade}"
        return DiskFeatures(folder, rows, width, dtype, device, claim=work.claim)
    if cfg.feature_store == "host" and device.type == "cuda":
        return HostFeatures(rows, width, dtype, device)
    return MemoryStore(rows, width, dtype, device)


class WorkDir:
    """The directory disk-stored features go to: ``path`` (made if missing; with ``claim``,
    a run directory's folder whose every folder and file is recorded before it is made), or a
    temporary one (the trainer gives ranks other than 0 a temporary one: they never write in
    the run). Only what it made is removed."""

    def __init__(self, path: str | Path | None, claim: Callable[[Path, str], object] | None = None):
        self._given = Path(path) if path is not None else None
        self.claim = claim
        self._temp: str | None = None
        self._made = False

    @property
    def path(self) -> Path:
        if self._given is None:
            if self._temp is None:
                self._temp = tempfile.mkdtemp(prefix="mgdl_fast_features_")
            return Path(self._temp)
        if not self._made and not self._given.is_dir():
            if self.claim is not None:
                self.claim(self._given, "dir")
            try:
                self._given.mkdir(parents=self.claim is None)
            except OSError as exc:
                raise WriteError(f"cannot create {self._given}: {exc.strerror}") from None
            self._made = True
        return self._given

    def close(self) -> None:
        if self._temp is not None:
            shutil.rmtree(self._temp, ignore_errors=True)
        elif self._made and self._given is not None and not any(self._given.iterdir()):
            self._given.rmdir()


class Freezer:
    """Freezes a trained grade: one chunked forward over every split gives its outputs
    (absorbed by the objective) and features (the next grade's inputs, in the configured
    store, replacing the previous ones)."""

    def __init__(self, result, objective, cfg: TrainConfig, work: WorkDir):
        self.result, self.objective, self.cfg, self.work = result, objective, cfg, work

    def __call__(self, engine, params, scale, inputs):
        """``scale`` None means the objective's scale for a grade just trained. Returns the
        new inputs and the largest activation of each last-layer unit on the train split."""
        store = new_store(self.cfg, inputs, self.objective.splits, engine, params.shape.width,
                          self.work, len(self.result.model) + 1)  # fmt: skip
        new_inputs, outputs, largest = freeze_grade(
            engine, params, inputs, self.objective.splits, store
        )
        # A sharded grade's units are alive when they activate on any rank's rows.
        getattr(self.objective, "world", SINGLE).all_reduce_(largest, op="max")
        self.objective.absorb(outputs)
        grade_scale = self.objective.grade_scale() if scale is None else scale
        self.result.model.append(params, grade_scale)
        if params.flat.device.type == "cuda":
            torch.cuda.synchronize(params.flat.device)
        if isinstance(inputs, RecomputedFeatures):
            # Without the cache, later grades recompute their inputs through the frozen grades.
            inputs.add_grade(params, engine)
            return inputs, largest
        inputs.release()
        return new_inputs, largest

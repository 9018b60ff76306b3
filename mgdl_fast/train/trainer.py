"""Grade-by-grade training (MGDL) and its end-to-end baseline (SGDL, the one-grade case).

Each grade binds its backend once (``mgdl_fast.backends.bind``): the objective's steps, the
optimizer updates and the freezing forward all run on that one engine, recorded per grade in
``GradeRecord.backend``. A run resumes from a ``TrainingState`` (finished grades, and the grade
in progress exactly where it was saved) and, with ``on_diverge="retry"``, retrains a grade
whose loss became NaN or infinite at half the learning rate, a bounded number of times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from ..backends import bind
from ..backends.engine import Engine
from ..block import BlockParams, BlockShape
from ..encoding import make_encoding
from ..errors import DivergenceError, InputError
from .cache import FeatureCache, RecomputedFeatures, freeze_grade
from .config import ModelConfig, TrainConfig
from .early_stop import ValidationSmoothing
from .health import grade_health
from .history import GradeRecord
from .loop import Grade, GradeHook, run_grade
from .model import MultiGradeModel
from .optim import GradeOptimizer
from .progress import Progress
from .state import Checkpointer, GradeProgress, Interrupted, TrainingState

ON_DIVERGE = ("stop", "retry")
MAX_RETRIES = 3
_log = logging.getLogger("mgdl_fast")


@dataclass
class FitResult:
    """The trained model, one record per grade, the backend of each op, and a divergence."""

    model: MultiGradeModel
    records: list[GradeRecord] = field(default_factory=list)
    backends: dict[str, str] = field(default_factory=dict)
    diverged: DivergenceError | None = None
    interrupted: Interrupted | None = None
    grades_stop: str | None = None


def grade_shapes(model_cfg: ModelConfig, in_dim: int, out_dim: int) -> list[BlockShape]:
    """Block shapes: MGDL grade 1 reads ``in_dim`` inputs and grade k+1 grade k's features
    (its width); SGDL is one block of ``grades * layers`` hidden layers. For adaptive grades,
    the most that may be trained."""
    if model_cfg.kind == "sgdl":
        depth = model_cfg.planned_grades * model_cfg.layers_of(0)
        return [BlockShape(in_dim, model_cfg.width_of(0), depth, out_dim)]
    shapes: list[BlockShape] = []
    for k in range(model_cfg.planned_grades):
        reads = in_dim if k == 0 else shapes[-1].width
        shapes.append(BlockShape(reads, model_cfg.width_of(k), model_cfg.layers_of(k), out_dim))
    return shapes


def bind_grade(shape: BlockShape, inputs, objective, cfg: TrainConfig) -> Engine:
    """The grade's engine: rows enough for a full-batch step on the train split and for
    chunked forwards of every split."""
    largest = max(inputs.rows(split) for split in objective.splits)
    rows = max(inputs.rows("train"), min(cfg.chunk_size, largest))
    return bind(
        shape,
        device=cfg.torch_device(),
        rows=rows,
        input_dtype=inputs.dtype,
        options=cfg.options(),
        backend=cfg.backend,
    )


def use_cuda_graph(engine: Engine, objective, cfg: TrainConfig, hook) -> bool:
    """Capture K-epoch blocks when the engine and objective allow it and no hook runs."""
    possible = engine.capturable and getattr(objective, "capturable", False) and hook is None
    return possible and engine.device.type == "cuda" and cfg.cuda_graph is not False


def objective_state(objective) -> dict[str, torch.Tensor]:
    """A copy of the objective's own state (the TV variable ``u``; empty for regression)."""
    state: dict[str, torch.Tensor] = getattr(objective, "state_dict", dict)()
    return {k: v.detach().clone() for k, v in state.items()}


def fit(
    task,
    objective,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    *,
    progress: Progress | bool = True,
    on_grade_end: Callable[[FitResult], None] | None = None,
    resume: TrainingState | None = None,
    hook: GradeHook | None = None,
    checkpointer: Checkpointer | None = None,
    on_diverge: str = "stop",
) -> FitResult:
    """Train ``model_cfg``'s grades one after another on ``task`` with ``objective``.

    Each grade trains on the cached last-hidden features of the previous one (coordinates for
    grade 1), is frozen, and its outputs are absorbed into the objective's residuals; then its
    own features replace the cache. ``resume`` continues a saved run: its finished grades are
    frozen again (their features computed once) and its grade in progress continues from its
    saved epoch. A diverging grade ends training (``diverged``; the earlier grades are kept)
    unless ``on_diverge`` is "retry"; a signal caught by ``checkpointer`` ends it after saving
    (``interrupted``). ``on_grade_end`` is called after every grade with the
    result so far; ``checkpointer`` saves the grade in progress; ``hook`` runs before every
    optimizer step (see GradeHook).
    """
    if on_diverge not in ON_DIVERGE:
        raise InputError(f"on_diverge must be one of {ON_DIVERGE}, got {on_diverge!r}")
    if not isinstance(progress, Progress):
        progress = Progress(quiet=not progress)
    encoding = make_encoding(model_cfg.encoding_config(), task.in_dim)
    if encoding is not None and resume is not None and resume.model.encoding is not None:
        encoding = resume.model.encoding
    reads = encoding.out_dim if encoding is not None else task.in_dim
    shapes = grade_shapes(model_cfg, reads, task.out_dim)
    train_cfg.check_grades(len(shapes))
    if model_cfg.adaptive and "val" not in objective.splits:
        raise InputError("grades auto chooses by validation PSNR; this task has no val split")
    coords = {name: task.splits[name].x for name in objective.splits}
    if encoding is not None:
        # The encoded coordinates are grade 1's inputs, computed once per split like features.
        encoding = encoding.to(train_cfg.torch_device())
        coords = {
            name: encoding.encode_chunked(x, train_cfg.chunk_size) for name, x in coords.items()
        }
    feature_dtype = train_cfg.feature_dtype(train_cfg.torch_device())
    result = FitResult(MultiGradeModel(encoding=encoding), list(resume.records) if resume else [])
    inputs: FeatureCache | RecomputedFeatures = (
        FeatureCache(coords)
        if train_cfg.feature_cache
        else RecomputedFeatures(coords, feature_dtype)
    )
    for params, scale in zip(resume.model.grades, resume.model.scales) if resume else ():
        engine = bind_grade(params.shape, inputs, objective, train_cfg)
        inputs, _ = _freeze(result, engine, params, scale, inputs, objective, feature_dtype)
    if resume is not None and resume.objective:
        objective.load_state_dict(resume.objective)
    if resume is not None and resume.rng is not None:
        torch.set_rng_state(resume.rng)
    start = resume.current if resume is not None else None
    for k in range(len(result.model), len(shapes)):
        if (stop := _adaptive_stop(model_cfg, result.records)) is not None:
            result.grades_stop = stop
            break
        grade_cfg = train_cfg.for_grade(k)
        trainer = _GradeTrainer(k + 1, shapes, inputs, objective, model_cfg, grade_cfg, result)
        try:
            inputs = trainer.train(start, progress, hook, checkpointer, on_diverge)
        except DivergenceError as exc:
            result.diverged = exc
            break
        except Interrupted as exc:
            result.interrupted = exc
            break
        start = None
        if on_grade_end is not None:
            on_grade_end(result)
    if model_cfg.adaptive and result.grades_stop is None and not result.diverged:
        result.grades_stop = _adaptive_stop(model_cfg, result.records) or (
            f"reached max_grades {model_cfg.max_grades}"
        )
    return result


def _adaptive_stop(model_cfg: ModelConfig, records: list[GradeRecord]) -> str | None:
    """Why ``grades="auto"`` adds no further grade, or None: the newest grade raised the
    validation PSNR by less than ``min_gain_db``."""
    if not model_cfg.adaptive or len(records) < 2:
        return None
    gain = records[-1].final["val_psnr"] - records[-2].final["val_psnr"]
    if gain >= model_cfg.min_gain_db:
        return None
    return (
        f"grade {records[-1].grade} raised the validation PSNR by {gain:.3f} dB "
        f"(< {model_cfg.min_gain_db:g} dB)"
    )


class _GradeTrainer:
    """Trains, freezes and records one grade (with its retries)."""

    def __init__(self, number, shapes, inputs, objective, model_cfg, train_cfg, result):
        self.number, self.shape, self.total = number, shapes[number - 1], len(shapes)
        self.inputs, self.objective, self.result = inputs, objective, result
        self.model_cfg, self.cfg = model_cfg, train_cfg

    def train(self, start, progress, hook, checkpointer, on_diverge):
        cfg, objective = self.cfg, self.objective
        lr, retries = (start.lr, list(start.retries)) if start else (cfg.lr, [])
        at_start = objective_state(objective)
        begun, before_s = time.perf_counter(), start.elapsed_s if start else 0.0
        while True:
            try:
                run, engine, params, graph = self._attempt(
                    start, lr, retries, progress, hook, checkpointer
                )
                break
            except DivergenceError as exc:
                if on_diverge != "retry" or len(retries) >= MAX_RETRIES:
                    raise
                retries.append({"lr": lr, "epoch": exc.epoch, "loss": exc.loss})
                _log.warning("%s; retrying grade %d at lr %g", exc, self.number, lr / 2)
                progress.event("retry", grade=self.number, lr=lr / 2, reason=str(exc))
                lr, start = lr / 2, None
                if at_start:
                    objective.load_state_dict(at_start)
        ops = {op: engine.backend for op in (*objective.ops, "update", "freeze")}
        self.result.backends.update(ops)
        baseline = getattr(objective, "mean_predictor_psnr", lambda: None)()
        feature_dtype = cfg.feature_dtype(params.flat.device)
        inputs, features = _freeze(
            self.result, engine, params, None, self.inputs, objective, feature_dtype
        )
        final = objective.final_metrics()
        health = grade_health(self.number, features, baseline, final)
        self.result.records.append(
            GradeRecord(
                grade=self.number,
                shape=self.shape.to_dict(),
                epochs_run=run.epochs,
                stop_reason=run.stop_reason,
                time_s=before_s + time.perf_counter() - begun,
                curves={name: {"epoch": e, "value": v} for name, (e, v) in run.log.series.items()},
                final=final,
                backend={**engine.describe(), "ops": ops, "cuda_graph": graph},
                settings={"lr": lr, "optimizer": cfg.optimizer, "epochs": cfg.epochs},
                retries=retries,
                health=health,
            )
        )
        progress.event("grade_end", grade=self.number, **{k: v for k, v in final.items()})
        return inputs

    def _attempt(self, start: GradeProgress | None, lr, retries, progress, hook, checkpointer):
        cfg, objective = self.cfg, self.objective
        device = cfg.torch_device()
        params = BlockParams.init(self.shape, seed=cfg.seed, device=device, scheme=cfg.init)
        if start is not None:
            params.flat.copy_(start.params)
        engine = bind_grade(self.shape, self.inputs, objective, cfg)
        objective.start_grade(engine, self.inputs, params)
        optimizer = GradeOptimizer(engine, cfg.optimizer, lr, params.flat.numel())
        if start is not None:
            optimizer.state.load_state_dict(start.optimizer)
        stop_rule = ValidationSmoothing(
            cfg.record_every, cfg.smooth_window, cfg.rel_tol,
            check_at_start=self.model_cfg.kind == "sgdl",
        )  # fmt: skip
        graph = use_cuda_graph(engine, objective, cfg, hook)
        grade = Grade(self.number, self.total, params, self.inputs, objective, optimizer)
        if start is not None:
            start = replace(start, retries=retries)

        def save(progress: GradeProgress) -> None:
            """The grade in progress with the finished grades around it."""
            assert checkpointer is not None
            state = TrainingState(
                self.result.model, self.result.records, progress, objective_state(objective),
                torch.get_rng_state(),
            )  # fmt: skip
            checkpointer.save(state)

        run = run_grade(
            grade, cfg, stop_rule, progress=progress, cuda_graph=graph, hook=hook,
            checkpointer=checkpointer, save=save if checkpointer is not None else None,
            start=start,
        )  # fmt: skip
        return run, engine, params, graph


def _freeze(result, engine, params, scale, inputs, objective, feature_dtype):
    """Freeze a trained grade: one chunked forward over every split gives its outputs (absorbed
    by the objective) and features (the next grade's inputs, replacing the previous cache).
    ``scale`` None means the objective's scale for a grade just trained. Returns the new inputs
    and the grade's train-split features ``[N, W]`` (for its health record)."""
    device = params.flat.device
    new_inputs, outputs = freeze_grade(engine, params, inputs, objective.splits, feature_dtype)
    objective.absorb(outputs)
    result.model.append(params, objective.grade_scale() if scale is None else scale)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    features = new_inputs.get("train")
    if isinstance(inputs, RecomputedFeatures):
        # Without the cache, later grades recompute their inputs through the frozen grades.
        new_inputs.release()
        inputs.add_grade(params, engine)
        return inputs, features
    inputs.release()
    return new_inputs, features

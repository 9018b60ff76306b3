"""Grade-by-grade training (MGDL) and its end-to-end baseline (SGDL, the one-grade case).

Each grade binds its backend once (``mgdl_fast.backends.bind``): the objective's steps, the
optimizer updates and the freezing forward all run on that one engine, recorded per grade in
``GradeRecord.backend``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from ..backends import bind
from ..backends.engine import Engine
from ..block import BlockParams, BlockShape
from ..errors import DivergenceError
from .cache import FeatureCache, RecomputedFeatures, freeze_grade
from .config import ModelConfig, TrainConfig
from .early_stop import ValidationSmoothing
from .history import GradeRecord
from .loop import GradeHook, run_grade
from .model import MultiGradeModel
from .optim import GradeOptimizer


@dataclass
class FitResult:
    """The trained model, one record per grade, the backend of each op, and a divergence."""

    model: MultiGradeModel
    records: list[GradeRecord] = field(default_factory=list)
    backends: dict[str, str] = field(default_factory=dict)
    diverged: DivergenceError | None = None


def grade_shapes(model_cfg: ModelConfig, in_dim: int, out_dim: int) -> list[BlockShape]:
    """Block shapes: MGDL grade 1 reads ``in_dim`` inputs and later grades ``width`` features;
    SGDL is one block of ``grades * layers`` hidden layers."""
    w = model_cfg.width
    if model_cfg.kind == "sgdl":
        return [BlockShape(in_dim, w, model_cfg.grades * model_cfg.layers, out_dim)]
    return [
        BlockShape(in_dim if k == 0 else w, w, model_cfg.layers, out_dim)
        for k in range(model_cfg.grades)
    ]


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


def fit(
    task,
    objective,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    *,
    progress: bool = True,
    on_grade_end: Callable[[FitResult], None] | None = None,
    resume: MultiGradeModel | None = None,
    resume_records: list[GradeRecord] | None = None,
    hook: GradeHook | None = None,
) -> FitResult:
    """Train ``model_cfg``'s grades one after another on ``task`` with ``objective``.

    Each grade trains on the cached last-hidden features of the previous one (coordinates for
    grade 1), is frozen, and its outputs are absorbed into the objective's residuals; then its
    own features replace the cache. ``resume`` continues after the grades of an earlier run
    (their features are computed once). A diverging grade ends training: the result keeps the
    grades before it and carries the error in ``diverged``. ``on_grade_end`` is called after
    every grade with the result so far (for outputs and checkpoints); ``hook`` runs before every
    optimizer step (see GradeHook).
    """
    device = train_cfg.torch_device()
    shapes = grade_shapes(model_cfg, task.in_dim, task.out_dim)
    coords = {name: task.splits[name].x for name in objective.splits}
    feature_dtype = train_cfg.feature_dtype(device)
    result = FitResult(MultiGradeModel(), list(resume_records or []))
    inputs: FeatureCache | RecomputedFeatures = (
        FeatureCache(coords)
        if train_cfg.feature_cache
        else RecomputedFeatures(coords, feature_dtype)
    )
    for params, scale in zip(resume.grades, resume.scales) if resume is not None else ():
        engine = bind_grade(params.shape, inputs, objective, train_cfg)
        inputs = _freeze(result, engine, params, scale, inputs, objective, train_cfg)

    for k in range(len(result.model), len(shapes)):
        start = time.perf_counter()
        params = BlockParams.init(
            shapes[k], seed=train_cfg.seed, device=device, scheme=train_cfg.init
        )
        engine = bind_grade(shapes[k], inputs, objective, train_cfg)
        objective.start_grade(engine, inputs, params)
        optimizer = GradeOptimizer(engine, train_cfg.optimizer, train_cfg.lr, params.flat.numel())
        stop_rule = ValidationSmoothing(
            train_cfg.record_every,
            train_cfg.smooth_window,
            train_cfg.rel_tol,
            check_at_start=model_cfg.kind == "sgdl",
        )
        graph = use_cuda_graph(engine, objective, train_cfg, hook)
        try:
            run = run_grade(
                k + 1, params, inputs, objective, optimizer, train_cfg, stop_rule,
                total_grades=len(shapes), progress=progress, cuda_graph=graph, hook=hook,
            )  # fmt: skip
        except DivergenceError as exc:
            result.diverged = exc
            break
        ops = {op: engine.backend for op in (*objective.ops, "update", "freeze")}
        result.backends.update(ops)
        inputs = _freeze(result, engine, params, None, inputs, objective, train_cfg)
        result.records.append(
            GradeRecord(
                grade=k + 1,
                shape=shapes[k].to_dict(),
                epochs_run=run.epochs,
                stop_reason=run.stop_reason,
                time_s=time.perf_counter() - start,
                curves={name: {"epoch": e, "value": v} for name, (e, v) in run.log.series.items()},
                final=objective.final_metrics(),
                backend={**engine.describe(), "ops": ops, "cuda_graph": graph},
            )
        )
        if on_grade_end is not None:
            on_grade_end(result)
    return result


def _freeze(result, engine, params, scale, inputs, objective, train_cfg):
    """Freeze a trained grade: one chunked forward over every split gives its outputs (absorbed
    by the objective) and features (the next grade's inputs, replacing the previous cache).
    ``scale`` None means the objective's scale for a grade just trained. Returns the new inputs.
    """
    device = params.flat.device
    new_inputs, outputs = freeze_grade(
        engine, params, inputs, objective.splits, train_cfg.feature_dtype(device)
    )
    objective.absorb(outputs)
    result.model.append(params, objective.grade_scale() if scale is None else scale)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if isinstance(inputs, RecomputedFeatures):
        # Without the cache, later grades recompute their inputs through the frozen grades.
        new_inputs.release()
        inputs.add_grade(params, engine)
        return inputs
    inputs.release()
    return new_inputs

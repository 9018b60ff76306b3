"""Grade-by-grade training (MGDL) and its end-to-end baseline (SGDL)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .block import BlockParams, BlockShape
from .cache import FeatureCache, RecomputedFeatures, freeze_grade
from .config import ModelConfig, TrainConfig
from .early_stop import ValidationSmoothing
from .errors import DivergenceError
from .history import GradeRecord, MetricLog
from .model import MultiGradeModel
from .objectives import Objective
from .optim import GradeOptimizer


@dataclass
class FitResult:
    """The trained model, one record per grade, the backends used, and a divergence if any."""

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


# Runs before every optimizer step of a grade as hook(grade, epoch, params, inputs, objective);
# a returned string stops the grade with that reason (e.g. the eigenvalue stopping rule).
GradeHook = Callable[[int, int, BlockParams, object, Objective], "str | None"]


def train_grade(
    grade: int,
    params: BlockParams,
    inputs: FeatureCache | RecomputedFeatures,
    objective: Objective,
    cfg: TrainConfig,
    stop_rule: ValidationSmoothing,
    *,
    total_grades: int,
    progress: bool,
    hook: GradeHook | None = None,
) -> tuple[MetricLog, int, str, dict[str, str]]:
    """Full-batch training of one grade in place. Returns (log, optimizer steps taken, stop
    reason, op -> backend). Raises DivergenceError when a recorded loss is NaN or infinite."""
    backends = objective.start_grade(inputs.get("train"), params)
    optimizer = GradeOptimizer(cfg.optimizer, cfg.lr, params, backend=cfg.backend)
    backends[optimizer.op] = optimizer.backend_name
    grad, log, reason, steps = params.zeros_like(), MetricLog(), "max_epochs", 0
    # disable=None: tqdm shows the bar on a terminal only (redrawn bars flood log files).
    with tqdm(
        total=cfg.epochs,
        desc=f"grade {grade}/{total_grades}",
        unit="ep",
        disable=None if progress else True,
        dynamic_ncols=True,
    ) as bar:
        for epoch in range(cfg.epochs):
            if hook is not None and (stop := hook(grade, epoch, params, inputs, objective)):
                reason = stop
                break
            objective.step(inputs, params, grad)
            optimizer.step(params, grad)
            steps += 1
            bar.update(1)
            if epoch % cfg.record_every == 0:
                with_test = epoch % cfg.test_every == 0
                for name, value in objective.record(inputs, params, with_test=with_test).items():
                    log.add(name, epoch, value)
            check = stop_rule.is_check_epoch(epoch)
            if check or epoch == cfg.epochs - 1:
                log.flush()
                _raise_if_diverged(grade, log)
                bar.set_postfix(objective.postfix(log))
                if check and cfg.early_stopping and stop_rule.should_stop(log.values("val_loss")):
                    reason = "early_stopping"
                    break
        log.flush()
    return log, steps, reason, backends


def _raise_if_diverged(grade: int, log: MetricLog) -> None:
    epochs, losses = log.series.get("train_loss", ([], []))
    for epoch, loss in zip(epochs, losses):
        if not math.isfinite(loss):
            raise DivergenceError(grade, epoch, loss)


def fit(
    task,
    objective: Objective,
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
    result = FitResult(MultiGradeModel(), list(resume_records or []))
    inputs = (
        FeatureCache(coords)
        if train_cfg.feature_cache
        else RecomputedFeatures(result.model, coords)
    )
    for params, scale in zip(resume.grades, resume.scales) if resume is not None else ():
        inputs = _freeze(result, params, scale, inputs, objective, train_cfg, device)

    for k in range(len(result.model), len(shapes)):
        start = time.perf_counter()
        params = BlockParams.init(
            shapes[k], seed=train_cfg.seed, device=device, scheme=train_cfg.init
        )
        stop_rule = ValidationSmoothing(
            train_cfg.record_every,
            train_cfg.smooth_window,
            train_cfg.rel_tol,
            check_at_start=model_cfg.kind == "sgdl",
        )
        try:
            log, steps, reason, backends = train_grade(
                k + 1,
                params,
                inputs,
                objective,
                train_cfg,
                stop_rule,
                total_grades=len(shapes),
                progress=progress,
                hook=hook,
            )
        except DivergenceError as exc:
            result.diverged = exc
            break
        result.backends.update(backends)
        inputs = _freeze(result, params, None, inputs, objective, train_cfg, device)
        result.records.append(
            GradeRecord(
                grade=k + 1,
                shape=shapes[k].to_dict(),
                epochs_run=steps,
                stop_reason=reason,
                time_s=time.perf_counter() - start,
                curves={name: {"epoch": e, "value": v} for name, (e, v) in log.series.items()},
                final=objective.final_metrics(),
            )
        )
        if on_grade_end is not None:
            on_grade_end(result)
    return result


def _freeze(result, params, scale, inputs, objective, train_cfg, device):
    """Freeze a trained grade: one chunked forward over every split gives its outputs (absorbed
    by the objective) and features (the next grade's inputs, replacing the previous cache).
    ``scale`` None means the objective's scale for a grade just trained. Returns the new inputs.
    """
    new_inputs, outputs = freeze_grade(
        params,
        inputs,
        objective.splits,
        train_cfg.feature_dtype(device),
        backend=train_cfg.backend,
        chunk_size=train_cfg.chunk_size,
    )
    objective.absorb(outputs)
    result.model.append(params, objective.grade_scale() if scale is None else scale)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if not train_cfg.feature_cache:
        # Without the cache, later grades recompute their inputs through result.model.
        new_inputs.release()
        return inputs
    inputs.release()
    return new_inputs

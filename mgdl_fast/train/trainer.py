"""Grade-by-grade training (MGDL) and its end-to-end baseline (SGDL, the one-grade case).

Each grade binds its backend once (``mgdl_fast.backends.bind``): the objective's steps, the
optimizer updates and the freezing forward all run on that one engine, recorded per grade in
``GradeRecord.backend``. A run resumes from a ``TrainingState`` (finished grades, and the grade
in progress exactly where it was saved) and, with ``on_diverge="retry"``, retrains a grade
whose loss became NaN or infinite, or that collapsed (``train.health``: every unit dead, or
worse than the mean predictor), at half the learning rate, a bounded number of times.

A task sharded over ranks (``mgdl_fast.distributed``) trains data-parallel: every rank runs this
same loop on its rows, its objective sums dW and metrics over ranks, and every decision (early
stopping, divergence, a checkpoint, a signal, another grade) is agreed, so the ranks take the
same steps and leave together.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from ..backends import bind
from ..backends.engine import Engine
from ..block import BlockParams, BlockShape
from ..distributed import SINGLE
from ..encoding import make_encoding
from ..errors import DivergenceError, InputError
from ..tasks.regression import psnr_from_loss
from . import budget as budgets
from .config import ModelConfig, TrainConfig
from .early_stop import ValidationSmoothing
from .features.freeze import Freezer, WorkDir, grade_inputs
from .health import CollapseError, collapse_reason, grade_health, largest_activations
from .history import GradeRecord
from .loop import GradeHook, GradeSetup, run_grade
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
    chunked forwards of every split; a streamed grade's calls are all chunks."""
    largest = max(inputs.rows(split) for split in objective.splits)
    rows = min(cfg.chunk_size, largest)
    if not cfg.stream:
        rows = max(inputs.rows("train"), rows)
    return bind(
        shape,
        device=cfg.torch_device(),
        rows=rows,
        input_dtype=inputs.dtype,
        options=cfg.options(),
        backend=cfg.backend,
    )


def use_cuda_graph(engine: Engine, objective, cfg: TrainConfig, hook) -> bool:
    """Capture K-epoch blocks when the engine and objective allow it, no hook runs, the
    inputs are device tensors (a streamed grade reads its chunks from the host) and the grade
    is not sharded (its epochs hold collectives)."""
    possible = engine.capturable and getattr(objective, "capturable", False) and hook is None
    possible = possible and not getattr(objective, "world", SINGLE).sharded
    in_memory = not cfg.stream and cfg.feature_store == "memory"
    return possible and in_memory and engine.device.type == "cuda" and cfg.cuda_graph is not False


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
    work_dir: str | Path | WorkDir | None = None,
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
    optimizer step (see GradeHook). ``work_dir`` holds features on disk (a temporary
    directory when None and ``feature_store`` is disk; other ranks than 0 of a sharded run
    always use a temporary one).
    """
    if on_diverge not in ON_DIVERGE:
        raise InputError(f"on_diverge must be one of {ON_DIVERGE}, got {on_diverge!r}")
    world = getattr(objective, "world", SINGLE)
    if not isinstance(progress, Progress):
        progress = Progress(quiet=not progress or not world.is_main)
    encoding = make_encoding(model_cfg.encoding_config(), task.in_dim)
    if encoding is not None and resume is not None and resume.model.encoding is not None:
        encoding = resume.model.encoding
    reads = encoding.out_dim if encoding is not None else task.in_dim
    shapes = grade_shapes(model_cfg, reads, task.out_dim)
    train_cfg.check_grades(len(shapes))
    if model_cfg.adaptive and "val" not in objective.splits:
        raise InputError("grades auto chooses by validation PSNR; this task has no val split")
    if encoding is not None:
        encoding = encoding.to(train_cfg.torch_device())
    inputs = grade_inputs(task, objective.splits, encoding, train_cfg)
    result = FitResult(MultiGradeModel(encoding=encoding), list(resume.records) if resume else [])
    work = work_dir if isinstance(work_dir, WorkDir) else WorkDir(work_dir)
    if not world.is_main:
        work = WorkDir(None)
    freeze = Freezer(result, objective, train_cfg, work)
    for params, scale in zip(resume.model.grades, resume.model.scales) if resume else ():
        engine = bind_grade(params.shape, inputs, objective, train_cfg)
        inputs, _ = freeze(engine, params, scale, inputs)
    if resume is not None and resume.objective:
        objective.load_state_dict(resume.objective)
    if resume is not None and resume.rng is not None:
        torch.set_rng_state(resume.rng)
    start = resume.current if resume is not None else None
    for k in range(len(result.model), len(shapes)):
        stop = _adaptive_stop(model_cfg, result.records)
        if model_cfg.adaptive and world.any(stop is not None):
            result.grades_stop = stop or "another rank stopped adding grades"
            break
        grade_cfg = train_cfg.for_grade(k)
        trainer = _GradeTrainer(k + 1, shapes, inputs, objective, model_cfg, grade_cfg, result)
        try:
            inputs = trainer.train(start, progress, hook, checkpointer, on_diverge, freeze)
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
    inputs.release()
    work.close()
    return result


def _psnr(loss: float, peak: float = 1.0) -> float:
    return psnr_from_loss(loss, peak) if math.isfinite(loss) else -math.inf


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

    def train(self, start, progress, hook, checkpointer, on_diverge, freeze):
        cfg, objective = self.cfg, self.objective
        lr, retries = (start.lr, list(start.retries)) if start else (cfg.lr, [])
        at_start = objective_state(objective)
        begun, before_s = budgets.now(), start.elapsed_s if start else 0.0
        budget = self._budget(begun - before_s)
        while True:
            try:
                run, engine, params, graph = self._attempt(
                    start, lr, retries, progress, hook, checkpointer, budget
                )
                self._check_collapse(run, engine, params)
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
        inputs, largest = freeze(engine, params, None, self.inputs)
        final = objective.final_metrics()
        health = grade_health(self.number, largest, baseline, final)
        self.result.records.append(
            GradeRecord(
                grade=self.number,
                shape=self.shape.to_dict(),
                epochs_run=run.epochs,
                stop_reason=run.stop_reason,
                time_s=before_s + budgets.now() - begun,
                curves={name: {"epoch": e, "value": v} for name, (e, v) in run.log.series.items()},
                final=final,
                backend={**engine.describe(), "ops": ops, "cuda_graph": graph},
                settings=self._settings(lr, run),
                retries=retries,
                health=health,
            )
        )
        progress.event("grade_end", grade=self.number, **{k: v for k, v in final.items()})
        return inputs

    def _budget(self, started: float) -> budgets.GradeBudget | None:
        """This grade's place in the run's time budget (None without one): the budget left
        after the finished grades, shared with the grades still to train."""
        cfg = self.cfg
        if cfg.time_budget_s is None:
            return None
        spent = sum(r.time_s for r in self.result.records)
        return budgets.GradeBudget(
            cfg.time_budget_s, spent, self.total - self.number + 1, int(cfg.epochs),
            cfg.record_every, started,
        )  # fmt: skip

    def _settings(self, lr: float, run) -> dict:
        """The record's settings; under a budget, the choice (or why none was taken)."""
        settings = {"lr": lr, "optimizer": self.cfg.optimizer, "epochs": self.cfg.epochs}
        if self.cfg.time_budget_s is not None:
            untimed = {"reason": f"the grade ended ({run.stop_reason}) before it was timed"}
            settings["budget"] = run.budget.to_dict() if run.budget is not None else untimed
        return settings

    def _check_collapse(self, run, engine, params) -> None:
        """Raise CollapseError for a grade that failed outright (``train.health``): its
        train PSNR is compared with the mean predictor's and with its initial parameters'. A
        grade a hook stopped (an experiment's own rule) is the hook's to judge."""
        if run.stop_reason not in ("max_epochs", "early_stopping"):
            return
        objective, cfg = self.objective, self.cfg
        largest = largest_activations(engine, params, self.inputs)
        getattr(objective, "world", SINGLE).all_reduce_(largest, op="max")
        baseline = getattr(objective, "mean_predictor_psnr", lambda: None)()
        loss = float(objective.record(self.inputs, params, with_test=False)["train_loss"])
        psnr = start = None
        if baseline is not None:
            initial = BlockParams.init(self.shape, seed=cfg.seed, device=params.flat.device,
                                       scheme=cfg.init)  # fmt: skip
            first = float(objective.record(self.inputs, initial, with_test=False)["train_loss"])
            # On the baseline's scale: the objective's peak (a field's data range), not 1.
            peak = getattr(objective, "peak", 1.0)
            psnr, start = _psnr(loss, peak), _psnr(first, peak)
        why = collapse_reason(largest, psnr, baseline, start)
        if why is not None:
            raise CollapseError(self.number, run.epochs - 1, loss, why)

    def _attempt(
        self, start: GradeProgress | None, lr, retries, progress, hook, checkpointer, budget
    ):
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
        grade = GradeSetup(self.number, self.total, params, self.inputs, objective, optimizer)
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
            start=start, budget=budget,
        )  # fmt: skip
        return run, engine, params, graph

"""A run's resumable state in one file: ``TrainingState`` as safetensors tensors plus its JSON
description in the file's metadata, written atomically, so a crash leaves the old state or the
new one, never half of each."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from ..block import BlockShape
from ..errors import InputError
from ..train.budget import BudgetChoice
from ..train.config import ModelConfig, per_grade
from ..train.history import GradeRecord
from ..train.model import MultiGradeModel
from ..train.state import GradeProgress, TrainingState
from . import atomic
from .checkpoint import encoding_meta, model_from_tensors, model_tensors
from .schema import KINDS, field, read_json

FORMAT = "mgdl_fast.state/1"
# Fields every grade record holds, and the optimizer tensors each optimizer saves (shape None:
# one per parameter; () a scalar).
RECORD_FIELDS = {"grade": "int", "shape": "dict", "epochs_run": "count", "stop_reason": "str",
                 "time_s": "number", "final": "dict"}  # fmt: skip
OPTIMIZER_TENSORS: dict[str, dict[str, tuple | None]] = {
    "adam": {"step": (), "exp_avg": None, "exp_avg_sq": None},
    "gd": {"step": ()},
}


def save_state(path: str | Path, state: TrainingState, config: dict) -> None:
    """Write ``state`` (and the run's ``config``) to ``path`` atomically."""
    atomic.atomic_write(path, lambda tmp: write_state(tmp, state, config))


def write_state(path: str | Path, state: TrainingState, config: dict) -> None:
    """Write ``state`` (and the run's ``config``) straight to ``path``: for a caller whose own
    atomic write owns the temporary name (a run directory records it first)."""
    tensors = dict(model_tensors(state.model))
    tensors |= {f"objective.{name}": t for name, t in state.objective.items()}
    if state.rng is not None:
        tensors["rng.torch"] = state.rng
    current = None
    if state.current is not None:
        c = state.current
        tensors["current.params"] = c.params
        tensors |= {f"current.optimizer.{name}": t for name, t in c.optimizer.items()}
        current = {"grade": c.grade, "epoch": c.epoch, "stop_rule": c.stop_rule,
                   "series": c.series, "elapsed_s": c.elapsed_s, "lr": c.lr,
                   "retries": c.retries,
                   "budget": c.budget.to_dict() if c.budget else None}  # fmt: skip
    meta = {
        "format": FORMAT,
        "config": config,
        "grades": [
            {**p.shape.to_dict(), "scale": s}
            for p, s in zip(state.model.grades, state.model.scales)
        ],
        "encoding": encoding_meta(state.model),
        "records": [r.to_dict() for r in state.records],
        "current": current,
    }
    text = json.dumps(meta)
    cpu = {name: t.detach().cpu().contiguous() for name, t in tensors.items()}
    save_file(cpu, str(path), metadata={"state": text})


def load_state(path: str | Path, device: torch.device) -> tuple[TrainingState, dict]:
    """The state and config saved at ``path``, tensors on ``device`` (the RNG state on CPU).
    Every field and tensor is checked (``_check_meta``, ``_current``): a damaged state is one
    InputError naming the file and the field."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            text = (fh.metadata() or {}).get("state")
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    except Exception as exc:  # OS and safetensors errors
        raise InputError(f"cannot read the run state {path}: {atomic.reason(exc)}") from None
    if text is None:
        raise InputError(f"{path}: field state (the file's metadata) is missing")
    meta = read_json(path, text)
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise InputError(f"{path} is not an mgdl_fast run state (format {FORMAT})")
    config, grades, encoding, records = _check_meta(path, meta)
    model = model_from_tensors(grades, tensors, path, encoding) if grades else None
    rng = tensors.get("rng.torch")
    expected_rng = torch.get_rng_state()
    if rng is not None and (rng.dtype != expected_rng.dtype or rng.shape != expected_rng.shape):
        raise InputError(f"{path}: tensor rng.torch has the wrong size or type")
    objective = {
        n.removeprefix("objective."): t.to(device)
        for n, t in tensors.items()
        if n.startswith("objective.")
    }
    state = TrainingState(
        model=model.to(device) if model is not None else MultiGradeModel(),
        records=records,
        current=_current(path, meta, tensors, config, len(grades), device),
        objective=objective,
        rng=rng,
    )
    return state, config


def _check_meta(path, meta: dict) -> tuple[dict, list, dict | None, list[GradeRecord]]:
    config = field(path, meta, "config", "dict")
    for part in ("model", "train", "task", "image"):
        field(path, config, part, "dict", where="config.")
    grades = field(path, meta, "grades", "list")
    encoding = field(path, meta, "encoding", "dict", null=True)
    records = []
    for k, record in enumerate(field(path, meta, "records", "list")):
        where = f"records[{k}]."
        for name, kind in RECORD_FIELDS.items():
            field(path, record, name, kind, where=where)
        records.append(GradeRecord.from_dict(record))
    field(path, meta, "current", "dict", null=True)
    if len(records) != len(grades):
        raise InputError(f"{path}: field records lists {len(records)} grades, grades {len(grades)}")
    return config, grades, encoding, records


def _current(path, meta: dict, tensors: dict, config: dict, finished: int, device):
    """The grade in progress, each field and tensor checked against the saved config."""
    c = meta["current"]
    if c is None:
        return None
    w = "current."
    grade = field(path, c, "grade", "int", where=w)
    if grade != finished + 1:
        raise InputError(f"{path}: field current.grade is {grade}, after {finished} finished")
    epochs = per_grade(_epochs(path, config), grade - 1)
    epoch = field(path, c, "epoch", "int", where=w)
    if not -1 <= epoch < epochs:
        raise InputError(f"{path}: field current.epoch {epoch} is outside -1..{epochs - 1}")
    series = field(path, c, "series", "dict", where=w)
    for name, pair in series.items():
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, list) for p in pair)
                and len(pair[0]) == len(pair[1])):  # fmt: skip
            raise InputError(f"{path}: field current.series.{name} must be [epochs, values]")
    budget = c.get("budget")
    if budget is not None:
        budget = BudgetChoice.from_dict(budget, f"{path}: field current.budget")
        if not epoch < budget.epochs <= epochs:
            where = f"{path}: field current.budget.epochs"
            raise InputError(f"{where} is outside {epoch + 1}..{epochs}")
    wanted = OPTIMIZER_TENSORS[_optimizer(path, config)]
    params = tensors.get("current.params")
    numel = _grade_numel(path, config, grade)
    if params is None or params.shape != (numel,) or not params.is_floating_point():
        raise InputError(f"{path}: tensor current.params is missing or not [{numel}] floats")
    prefix = "current.optimizer."
    optimizer = {n[len(prefix) :]: t for n, t in tensors.items() if n.startswith(prefix)}
    for name, shape in wanted.items():
        t = optimizer.get(name)
        if t is None or tuple(t.shape) != (shape if shape is not None else (numel,)):
            raise InputError(f"{path}: tensor {prefix}{name} is missing or of the wrong size")
    return GradeProgress(
        grade=grade, epoch=epoch, params=params.to(device),
        optimizer={n: t.to(device) for n, t in optimizer.items() if n in wanted},
        stop_rule=field(path, c, "stop_rule", "dict", where=w),
        series={name: (list(e), list(v)) for name, (e, v) in series.items()},
        elapsed_s=float(field(path, c, "elapsed_s", "number", where=w)),
        lr=float(field(path, c, "lr", "positive", where=w)),
        retries=field(path, c, "retries", "list", where=w), budget=budget,
    )  # fmt: skip


def _epochs(path, config: dict) -> int | list[int]:
    """The saved ``config.train.epochs``: an integer >= 1, or a non-empty list of them."""
    epochs = config["train"].get("epochs")
    values = epochs if isinstance(epochs, list) else [epochs]
    if not values or not all(KINDS["int"][0](v) and v >= 1 for v in values):
        raise InputError(
            f"{path}: field config.train.epochs must be an integer >= 1 or a list of them, "
            f"got {json.dumps(epochs)}"
        )
    return epochs


def _optimizer(path, config: dict) -> str:
    """The saved ``config.train.optimizer`` (adam when absent), one this file knows."""
    optimizer = config["train"].get("optimizer", "adam")
    if not (isinstance(optimizer, str) and optimizer in OPTIMIZER_TENSORS):
        raise InputError(
            f"{path}: field config.train.optimizer must be one of "
            f"{', '.join(OPTIMIZER_TENSORS)}, got {json.dumps(optimizer)}"
        )
    return optimizer


def _grade_numel(path, config: dict, grade: int) -> int:
    """Parameters of grade ``grade`` (1-based) as the saved config builds it."""
    try:
        model_cfg = ModelConfig(**config["model"])
        enc = model_cfg.encoding_config()
        per_input = 1 if enc.kind == "fourier" else 2  # positional: 2m per coordinate
        reads = 2 if enc.kind == "none" else 2 * enc.frequencies * per_input
        out_dim = int(config["image"]["channels"])
        if model_cfg.kind == "sgdl":
            depth = model_cfg.planned_grades * model_cfg.layers_of(0)
            return BlockShape(reads, model_cfg.width_of(0), depth, out_dim).num_params
        for k in range(grade):
            shape = BlockShape(reads, model_cfg.width_of(k), model_cfg.layers_of(k), out_dim)
            reads = shape.width
        return shape.num_params
    except (InputError, TypeError, ValueError, KeyError) as exc:
        raise InputError(
            f"{path}: field config.model does not build grade {grade} ({exc})"
        ) from None

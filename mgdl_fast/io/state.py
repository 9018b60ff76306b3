"""A run's resumable state in one file: ``TrainingState`` as safetensors tensors plus its JSON
description in the file's metadata, written atomically, so a crash leaves the old state or the
new one, never half of each."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from ..errors import InputError
from ..train.history import GradeRecord
from ..train.model import MultiGradeModel
from ..train.state import GradeProgress, TrainingState
from . import atomic
from .checkpoint import encoding_meta, model_from_tensors, model_tensors

FORMAT = "mgdl_fast.state/1"


def save_state(path: str | Path, state: TrainingState, config: dict) -> None:
    """Write ``state`` (and the run's ``config``) to ``path``."""
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
                   "retries": c.retries}  # fmt: skip
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
    atomic.atomic_write(path, lambda tmp: save_file(cpu, str(tmp), metadata={"state": text}))


def load_state(path: str | Path, device: torch.device) -> tuple[TrainingState, dict]:
    """The state and config saved at ``path``, tensors on ``device`` (the RNG state on CPU)."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = json.loads((fh.metadata() or {})["state"])
            tensors = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118
    except (OSError, SafetensorError, KeyError, ValueError) as exc:
        raise InputError(f"cannot read the run state {path}: {exc}") from None
    if meta.get("format") != FORMAT:
        raise InputError(f"{path} is not an mgdl_fast run state (format {FORMAT})")
    grades, encoding = meta["grades"], meta.get("encoding")
    model = model_from_tensors(grades, tensors, path, encoding) if grades else None
    current = None
    if meta["current"] is not None:
        c = meta["current"]
        prefix = "current.optimizer."
        optimizer = {
            n[len(prefix) :]: t.to(device) for n, t in tensors.items() if n.startswith(prefix)
        }
        series = {name: (list(e), list(v)) for name, (e, v) in c["series"].items()}
        current = GradeProgress(
            grade=c["grade"], epoch=c["epoch"], params=tensors["current.params"].to(device),
            optimizer=optimizer, stop_rule=c["stop_rule"], series=series,
            elapsed_s=c["elapsed_s"], lr=c["lr"], retries=c["retries"],
        )  # fmt: skip
    objective = {
        n.removeprefix("objective."): t.to(device)
        for n, t in tensors.items()
        if n.startswith("objective.")
    }
    state = TrainingState(
        model=model.to(device) if model is not None else MultiGradeModel(),
        records=[GradeRecord.from_dict(r) for r in meta["records"]],
        current=current,
        objective=objective,
        rng=tensors.get("rng.torch"),
    )
    return state, meta["config"]

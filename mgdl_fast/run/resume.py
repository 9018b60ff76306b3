"""What ``--resume`` may change: a resumed run's configuration from its saved one and the
settings given again.

Settings that would change finished grades (the task and its options, the model, its inputs,
the seed, the record cadence, early stopping, the feature cache) are refused when they differ
from the run's; ``grades`` may grow the run; ``lr``, ``epochs``, ``optimizer`` and
``time_budget`` apply from the grade in progress on (with a note; the budget is the whole fit's,
less the finished grades' time, and a grade in progress keeps epochs it already chose); the
device, backend, precision, CUDA graphs, streaming and feature store are chosen afresh
(``FREE``); the rest (outputs, checkpoints) belongs to each invocation.
"""

from __future__ import annotations

from typing import Any

import torch

from ..errors import InputError
from ..tasks import TASKS
from .config import RunConfig
from .resolve import check_bounds, flag, resolve

# (section, field) of the description -> where it lives in the resolved configuration.
FIXED = {
    ("task", "name"): ("task", "name"),
    ("model", "kind"): ("model", "kind"),
    ("model", "width"): ("model", "width"),
    ("model", "layers"): ("model", "layers"),
    ("model", "encoding"): ("model", "encoding"),
    ("model", "frequencies"): ("model", "frequencies"),
    ("model", "sigma"): ("model", "sigma"),
    ("training", "seed"): ("train", "seed"),
    ("training", "cache_dtype"): ("train", "cache_dtype"),
    ("training", "feature_cache"): ("train", "feature_cache"),
    ("training", "record_every"): ("train", "record_every"),
    ("training", "test_every"): ("train", "test_every"),
    ("training", "early_stop"): ("train", "early_stopping"),
    ("input", "crop"): ("image", "crop"),
}
# training field -> its key in the resolved configuration's train part.
LATER_GRADES = {"lr": "lr", "epochs": "epochs", "optimizer": "optimizer",
                "time_budget": "time_budget_s"}  # fmt: skip
FREE = ("device", "backend", "precision", "deterministic", "cuda_graph", "stream",
        "feature_store")  # fmt: skip


def _lookup(config: dict, where: tuple[str, ...]) -> Any:
    value: Any = config
    for key in where:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _fixed(saved: dict) -> dict:
    """FIXED with the saved task's own options (all fixed: they define its observation)."""
    spec = TASKS.get(_lookup(saved, ("task", "name")))
    options = spec.options if spec is not None else {}
    return {**FIXED, **{("task", name): ("task", key) for name, key in options.items()}}


def resumed_config(
    run: RunConfig, given: dict, saved: dict, finished: int, device: torch.device
) -> tuple[dict, list[str]]:
    """The saved configuration with what a resume may change applied (``given``: the
    settings given again, ``{section: {field: value}}``); returns it and the notes to print.
    Refuses, in one line naming them, settings that would change finished grades."""
    candidate = resolve(run, device)
    changed = []
    for (section, name), where in _fixed(saved).items():
        if name not in given.get(section, {}):
            continue
        old, new = _lookup(saved, where), _lookup(candidate, where)
        if old != new:
            changed.append(f"{flag(section, name)} ({old} -> {new})")
    if changed:
        raise InputError(
            f"--resume cannot change {', '.join(changed)}: that would change the grades already "
            "trained; start a new run (another --out, or --overwrite)"
        )
    config = {k: (dict(v) if isinstance(v, dict) else v) for k, v in saved.items()}
    notes = []
    model_given, training_given = given.get("model", {}), given.get("training", {})
    if "grades" in model_given:
        grades = model_given["grades"]
        if grades != "auto" and grades < finished:
            raise InputError(f"--grades {grades} is below the {finished} grades already trained")
        config["model"]["grades"] = grades
    for name, key in (("max_grades", "max_grades"), ("min_gain", "min_gain_db")):
        if name in model_given:
            config["model"][key] = candidate["model"][key]
    for name, key in LATER_GRADES.items():
        if name in training_given and candidate["train"][key] != saved["train"].get(key):
            config["train"][key] = candidate["train"][key]
            value = training_given[name]
            notes.append(f"{flag('training', name)} {value} applies from grade {finished + 1} on")
    for key in FREE:
        config["train"][key] = candidate["train"][key]
    check_bounds(config)
    return config, notes


__all__ = ["FIXED", "FREE", "LATER_GRADES", "resumed_config"]

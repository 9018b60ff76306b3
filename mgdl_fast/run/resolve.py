"""From a run description to the settings a run trains with, and back.

``resolve`` turns a ``RunConfig`` into the resolved configuration every part of a run reads
and records (``config``: ``task``, ``preset``, ``model`` and ``train`` as the engine's
``ModelConfig`` / ``TrainConfig`` dicts, ``image``): the preset and every ``None`` settled from
the task's defaults, validated, counts bounded before anything is built from them.
``described`` turns a resolved configuration back into a complete ``RunConfig`` (what
``run.toml`` holds: it reruns the run exactly).
"""

from __future__ import annotations

from dataclasses import fields, replace

import torch

from ..errors import InputError
from ..tasks import TASKS, fit_defaults
from ..train import ModelConfig, TrainConfig
from ..train.config import resolve_device
from .config import RunConfig, TaskSection

DEFAULT_IMAGE = "skimage.data.camera()"
# Counts bounded before anything is built from them (one line each, naming the option): far
# above any run this engine serves (the papers use 4 grades of 2-3 layers of 128-256 units),
# far below what would exhaust memory while shapes are made.
BOUNDS = {
    ("model", "grades"): ("--grades", 64),
    ("model", "max_grades"): ("--max-grades", 64),
    ("model", "width"): ("--width", 1 << 14),
    ("model", "layers"): ("--layers", 64),
    ("model", "frequencies"): ("--frequencies", 1 << 14),
    ("train", "epochs"): ("--epochs", 10**9),
    ("train", "record_every"): ("--record-every", 10**9),
    ("train", "test_every"): ("--test-every", 10**9),
}


def flag(section: str, name: str) -> str:
    """The command-line option of a field (what error lines name)."""
    from .config import SECTIONS

    f = next(f for f in fields(SECTIONS[section]) if f.name == name)
    return f.metadata.get("flag") or "--" + name.replace("_", "-")


def check_bounds(config: dict) -> None:
    """Refuse a count above its bound in ``BOUNDS`` (a per-grade list: any entry)."""
    for (part, key), (option, most) in BOUNDS.items():
        value = config[part].get(key)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool) and v > most:
                raise InputError(f"{option} must be at most {most}, got {v}")


def device_of(run: RunConfig) -> torch.device:
    """The run's device, resolved once."""
    return resolve_device(run.resources.device)


def task_config(task: TaskSection, kind: str) -> dict:
    """``config['task']``: the task's options with its defaults filled in; options another
    task takes are refused in one line."""
    if task.name not in TASKS:
        raise InputError(f"unknown task {task.name!r}; choose from {', '.join(TASKS)}")
    spec = TASKS[task.name]
    given = {
        f.name: getattr(task, f.name)
        for f in fields(TaskSection)
        if f.name != "name" and getattr(task, f.name) != f.default
    }
    foreign = [name for name in given if name not in spec.options]
    if foreign:
        takers = [t for t, s in TASKS.items() if all(n in s.options for n in foreign)]
        flags = ", ".join(flag("task", n) for n in foreign)
        raise InputError(f"{flags} apply to --task {' or '.join(takers)} only")
    return spec.configure(kind, **{n: getattr(task, n) for n in spec.options})


def _given(value, default):
    return default if value is None else value


def defaults_for(task: str, kind: str, preset: str) -> dict:
    """The task's and preset's defaults (``tasks.fit_defaults``), with grade 1's encoding
    settings the engine's own where the preset sets none."""
    engine = ModelConfig()
    inputs = {"encoding": engine.encoding, "frequencies": engine.frequencies,
              "sigma": engine.sigma}  # fmt: skip
    return {**inputs, **fit_defaults(task, kind, preset)}


def _budget(t, defaults: dict) -> float | None:
    """The training time budget: the one given, else the preset's unless epochs are given."""
    if t.time_budget is not None:
        return t.time_budget
    return None if t.epochs is not None else defaults.get("time_budget_s")


def resolve(run: RunConfig, device: torch.device) -> dict:
    """The resolved configuration of ``run`` on ``device`` (see the module docstring)."""
    m, t, r = run.model, run.training, run.resources
    preset = m.preset if m.preset != "auto" else "paper" if device.type == "cuda" else "quick"
    task = task_config(run.task, m.kind)
    defaults = defaults_for(task["name"], m.kind, preset)
    model = ModelConfig(
        kind=m.kind, grades=_given(m.grades, defaults["grades"]),
        width=_given(m.width, defaults["width"]), layers=_given(m.layers, defaults["layers"]),
        max_grades=m.max_grades, min_gain_db=m.min_gain,
        encoding=_given(m.encoding, defaults["encoding"]),
        frequencies=_given(m.frequencies, defaults["frequencies"]),
        sigma=_given(m.sigma, defaults["sigma"]),
    )  # fmt: skip
    record_every = _given(t.record_every, defaults["record_every"])
    cache_dtype = t.cache_dtype
    if cache_dtype == "auto" and defaults["cache_dtype"] != "auto":
        cache_dtype = defaults["cache_dtype"]
    train = TrainConfig(
        epochs=_given(t.epochs, defaults["epochs"]), lr=_given(t.lr, defaults["lr"]),
        optimizer=t.optimizer, early_stopping=defaults["early_stopping"] and t.early_stop,
        record_every=record_every,
        test_every=_given(t.test_every, defaults["test_every"] or record_every),
        seed=t.seed, device=str(device), backend=r.backend, precision=r.precision,
        deterministic=r.deterministic, cuda_graph=r.cuda_graph, cache_dtype=cache_dtype,
        feature_cache=t.feature_cache,
        time_budget_s=_budget(t, defaults),
        # auto is settled by the memory plan (run/plan.py) once the image is open.
        stream=r.stream == "on",
        feature_store="memory" if r.feature_store == "auto" else r.feature_store,
    )  # fmt: skip
    config = {
        "task": task,
        "preset": preset,
        "model": model.to_dict(),
        "train": train.to_dict(),
        "image": {"source": run.input.image or DEFAULT_IMAGE, "crop": run.input.crop},
    }
    check_bounds(config)
    return config


def described(run: RunConfig, config: dict) -> RunConfig:
    """``run`` with every setting the resolved ``config`` settled written out: rerunning the
    result reproduces the run (the image by its absolute path, the device as resolved)."""
    model, train, task, image = config["model"], config["train"], config["task"], config["image"]
    spec = TASKS[task["name"]]
    task_options = {name: task[key] for name, key in spec.options.items()}
    return replace(
        run,
        input=replace(run.input, image=image.get("path"), crop=image.get("crop")),
        task=replace(run.task, name=task["name"], **task_options),
        model=replace(
            run.model, kind=model["kind"], preset=config["preset"], grades=model["grades"],
            width=model["width"], layers=model["layers"], max_grades=model["max_grades"],
            min_gain=model["min_gain_db"], encoding=model["encoding"],
            frequencies=model["frequencies"], sigma=model["sigma"],
        ),
        training=replace(
            run.training, epochs=train["epochs"], lr=train["lr"], optimizer=train["optimizer"],
            early_stop=train["early_stopping"], record_every=train["record_every"],
            test_every=train["test_every"], seed=train["seed"],
            cache_dtype=train["cache_dtype"], feature_cache=train["feature_cache"],
            time_budget=train.get("time_budget_s"),
        ),
        resources=replace(
            run.resources, device=train["device"], backend=train["backend"],
            precision=train["precision"], deterministic=train["deterministic"],
            cuda_graph=train["cuda_graph"], stream="on" if train["stream"] else "off",
            feature_store=train["feature_store"],
        ),
    )  # fmt: skip


def budget_spent(run: RunConfig, records) -> RunConfig:
    """A description that reruns a finished budgeted run exactly: the epochs the budget chose
    for each grade (``records``' settings), no budget."""
    chosen = [r.settings.get("budget", {}).get("epochs", r.settings.get("epochs")) for r in records]
    if not records or run.training.time_budget is None:
        return run
    epochs = chosen[0] if len(set(chosen)) == 1 else chosen
    return replace(run, training=replace(run.training, epochs=epochs, time_budget=None))


__all__ = [
    "DEFAULT_IMAGE",
    "budget_spent",
    "check_bounds",
    "described",
    "device_of",
    "resolve",
    "task_config",
]

"""The fit command's configuration: a new run's from its options and the task defaults, and a
resumed run's from its saved one, with the rules of what ``--resume`` may change.

Resume rules: options that would change finished grades (the task, model, width, layers,
seed, inputs, observation, record cadence, early stopping, feature cache) are refused when
they differ from the run's; ``--grades`` may grow the run; ``--lr``, ``--epochs`` and
``--optimizer`` apply from the grade in progress on (a note says so); device, backend,
precision, CUDA graphs, checkpoints, divergence handling and output options are free.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..io.images import default_image
from ..io.lazy import LazyImage, open_lazy
from ..tasks import TASKS, fit_defaults, restoration
from ..train import ModelConfig, TrainConfig

DEFAULT_IMAGE = "skimage.data.camera()"
# Option (argparse dest) -> where it lives in the config, for the options --resume may not
# change; the value a flag stores is mapped by FLAG_VALUES.
FIXED = {
    "task": ("task", "name"),
    "model": ("model", "kind"),
    "width": ("model", "width"),
    "layers": ("model", "layers"),
    "seed": ("train", "seed"),
    "cache_dtype": ("train", "cache_dtype"),
    "no_feature_cache": ("train", "feature_cache"),
    "record_every": ("train", "record_every"),
    "test_every": ("train", "test_every"),
    "no_early_stop": ("train", "early_stopping"),
    "noise": ("task", "noise_255"),
    "blur": ("task", "blur"),
    "beta": ("task", "beta"),
    "lam": ("task", "lambda"),
    "noise_seed": ("task", "noise_seed"),
    "crop": ("image", "crop"),
    "encoding": ("model", "encoding"),
    "frequencies": ("model", "frequencies"),
    "sigma": ("model", "sigma"),
}
LATER_GRADES = {"lr": "lr", "epochs": "epochs", "optimizer": "optimizer"}
# Chosen afresh by every invocation (not inherited from the saved run).
FREE = ("device", "backend", "precision", "deterministic", "cuda_graph", "stream",
        "feature_store")  # fmt: skip


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


def check_bounds(config: dict) -> None:
    """Refuse a count above its bound in ``BOUNDS`` (a per-grade list: any entry)."""
    for (part, key), (option, most) in BOUNDS.items():
        value = config[part].get(key)
        values = value if isinstance(value, list) else [value]
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool) and v > most:
                raise InputError(f"{option} must be at most {most}, got {v}")


def cpu_device(name: str | None) -> str | None:
    """A device option with ``cpu:N`` read as ``cpu`` (there is one CPU device)."""
    if name is not None and name.split(":")[0].strip() == "cpu":
        return "cpu"
    return name


def number_list(kind: type):
    """argparse type: one number, or a comma list of them (one per grade)."""
    noun = {"int": "an integer", "float": "a number"}[kind.__name__]

    def parse(text: str):
        try:
            values = [kind(v) for v in text.split(",")]
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {noun} or a comma list of them, got {text!r}"
            ) from None
        return values[0] if len(values) == 1 else values

    parse.__name__ = f"{kind.__name__} list"
    return parse


def grades_value(text: str):
    """argparse type of --grades: an integer, or auto."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"an integer or auto, got {text!r}") from None


def option_name(dest: str) -> str:
    return "--" + {"lam": "lambda"}.get(dest, dest).replace("_", "-")


def _given(value, default):
    return default if value is None else value


def task_config(args) -> dict:
    """``config['task']``: the restoration settings (authors' defaults filled in), refused for
    other tasks."""
    task = _given(args.task, "regression")
    given = [
        option_name(name)
        for name in ("noise", "blur", "beta", "lam", "noise_seed")
        if getattr(args, name) is not None
    ]
    if task not in restoration.RESTORE_TASKS:
        if given:
            raise InputError(f"{', '.join(given)} apply to --task denoise or deblur only")
        return {"name": task}
    return restoration.task_config(
        task,
        _given(args.model, "mgdl"),
        noise_255=args.noise,
        blur=args.blur,
        beta=args.beta,
        lam=args.lam,
        noise_seed=_given(args.noise_seed, 0),
    )


def config_from_args(args) -> dict:
    """A new run's full configuration (validated) from the options and the task defaults."""
    args.device = cpu_device(args.device)
    device = TrainConfig(device=_given(args.device, "auto")).torch_device()
    preset = _given(args.preset, "auto")
    if preset == "auto":
        preset = "paper" if device.type == "cuda" else "quick"
    task = task_config(args)
    defaults = fit_defaults(task["name"], _given(args.model, "mgdl"), preset)
    record_every = _given(args.record_every, defaults["record_every"])
    model = ModelConfig(
        kind=_given(args.model, "mgdl"),
        grades=_given(args.grades, defaults["grades"]),
        width=_given(args.width, defaults["width"]),
        layers=_given(args.layers, defaults["layers"]),
        max_grades=_given(args.max_grades, 8),
        min_gain_db=_given(args.min_gain, 0.1),
        encoding=_given(args.encoding, defaults.get("encoding", "none")),
        frequencies=_given(args.frequencies, defaults.get("frequencies", 64)),
        sigma=_given(args.sigma, defaults.get("sigma", 5.0)),
    )
    cache_dtype = _given(args.cache_dtype, "auto")
    store = getattr(args, "feature_store", None)
    if cache_dtype == "auto" and defaults["cache_dtype"] != "auto":
        cache_dtype = defaults["cache_dtype"]
    train = TrainConfig(
        epochs=_given(args.epochs, defaults["epochs"]),
        lr=_given(args.lr, defaults["lr"]),
        optimizer=_given(args.optimizer, "adam"),
        early_stopping=defaults["early_stopping"] and not args.no_early_stop,
        record_every=record_every,
        test_every=_given(args.test_every, defaults["test_every"] or record_every),
        seed=_given(args.seed, 0),
        device=_given(args.device, "auto"),
        backend=args.backend,
        precision=args.precision,
        deterministic=False if args.nondeterministic else None,
        cuda_graph=False if args.no_cuda_graph else None,
        cache_dtype=cache_dtype,
        feature_cache=not args.no_feature_cache,
        # auto (None) is settled by the memory plan (cli/fit_memory.py) once the image is open.
        stream=getattr(args, "stream", None) == "on",
        feature_store="memory" if store in (None, "auto") else store,
        time_budget_s=None if args.epochs is not None else defaults.get("time_budget_s"),
    )
    config = {
        "task": task,
        "preset": preset,
        "model": model.to_dict(),
        "train": train.to_dict(),
        "image": {"source": args.image or DEFAULT_IMAGE, "crop": args.crop},
    }
    check_bounds(config)
    return config


def _lookup(config: dict, where: tuple[str, ...]):
    value: Any = config
    for key in where:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def resumed_config(args, saved: dict, finished: int) -> tuple[dict, list[str]]:
    """The saved config with what ``--resume`` may change applied; returns it and the notes
    to print. Refuses (one line naming them) options that would change finished grades."""
    candidate = config_from_args(args)
    changed = []
    for dest, where in FIXED.items():
        value = getattr(args, dest, None)
        if value is None or value is False:
            continue
        old, new = _lookup(saved, where), _lookup(candidate, where)
        if old != new:
            changed.append(f"{option_name(dest)} ({old} -> {new})")
    if changed:
        raise InputError(
            f"--resume cannot change {', '.join(changed)}: that would change the grades already "
            "trained; start a new run (another --out, or --overwrite)"
        )
    config, notes = {k: (dict(v) if isinstance(v, dict) else v) for k, v in saved.items()}, []
    if args.grades is not None:
        if args.grades != "auto" and args.grades < finished:
            raise InputError(
                f"--grades {args.grades} is below the {finished} grades already trained"
            )
        config["model"]["grades"] = args.grades
    for dest, key in (("max_grades", "max_grades"), ("min_gain", "min_gain_db")):
        if getattr(args, dest) is not None:
            config["model"][key] = candidate["model"][key]
    for dest, key in LATER_GRADES.items():
        value = getattr(args, dest)
        if value is not None and value != saved["train"][key]:
            config["train"][key] = candidate["train"][key]
            notes.append(f"{option_name(dest)} {value} applies from grade {finished + 1} on")
    for key in FREE:
        config["train"][key] = candidate["train"][key]
    check_bounds(config)
    return config, notes


def describe_image(image: LazyImage, source: str, run_dir: Path) -> dict:
    """The image part of a config: where it came from (as given, absolute, and relative to the
    run directory) and the content hash that identifies it on resume."""
    info = {"source": source, "sha256": image.sha256()}
    if source != DEFAULT_IMAGE:
        path = Path(source).resolve()
        info |= {"path": str(path), "path_from_run": os.path.relpath(path, run_dir.resolve())}
    return info


def load_run_image(saved: dict, given: str | None, run_dir: Path) -> LazyImage:
    """The image of a resumed run: ``given`` (it must be the same image), else found where the
    run recorded it (absolute path, then relative to the run directory)."""
    if saved.get("source") == DEFAULT_IMAGE and given is None:
        image = load_new_image(DEFAULT_IMAGE)
    elif given is not None:
        image = open_lazy(given)
    else:
        places: list[Path] = []
        if saved.get("path"):
            places.append(Path(saved["path"]))
        if saved.get("path_from_run"):
            places.append(run_dir / saved["path_from_run"])
        if saved.get("source"):
            places.append(Path(saved["source"]))
        found = next((p for p in places if p.is_file()), None)
        if found is None:
            listed = ", ".join(str(p) for p in places)
            raise InputError(f"--resume: cannot find the run's image (tried {listed}); pass it")
        image = open_lazy(found)
    if saved.get("sha256") and image.sha256() != saved["sha256"]:
        raise InputError(
            f"--resume: {image.source} is not the image this run was trained on (content "
            "hash differs)"
        )
    return image


def load_new_image(source: str) -> LazyImage:
    """The image of a new run, read lazily where its format allows (``io.lazy``)."""
    if source == DEFAULT_IMAGE:
        image = default_image()
        return LazyImage(image.pixels, image.source, image.notes)
    return open_lazy(source)


__all__ = ["DEFAULT_IMAGE", "TASKS", "config_from_args", "resumed_config", "task_config"]

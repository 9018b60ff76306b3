"""One run description: ``RunConfig``, six sections (input, task, model, training, resources,
outputs), every default written once, here. The command line's options are made from these
fields (``cli/options.py``, ``add_run_options``; grouped by section, defaults shown from the
fields), a TOML file gives the same (``mgdl-fast fit --config run.toml``, command-line options
override it), and every run directory holds its resolved description as ``run.toml``, which
reruns it exactly.

A field that is ``None`` takes its value from the task's and preset's defaults
(``tasks.fit_defaults``), settled when the run is resolved (``run/resolve.py``). Unknown keys and
values of the wrong kind are refused in one line naming the key.
"""

from __future__ import annotations

import sys
from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from ..errors import InputError
from ..tasks import PRESETS

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover (Python 3.10)
    import tomli as tomllib

import tomli_w


def option(default: Any, help: str, kind: str, **cli: Any) -> Any:
    """A field with what its command-line option and its TOML key need: ``kind`` (int, float,
    str, bool, ints, floats, grades, crop: the values it takes), ``help`` and CLI extras
    (``flag``, ``choices``, ``negate`` for a true-by-default switch, ``key`` for a TOML key
    other than the field's name)."""
    return field(default=default, metadata={"help": help, "kind": kind, **cli})


@dataclass
class InputSection:
    image: str | None = option(None, "image file (default: skimage's 512x512 cameraman)", "str")
    crop: list[int] | None = option(
        None, "train on the centre H x W crop of the image (any task)", "crop",
        metavar=("H", "W"),
    )  # fmt: skip


@dataclass
class TaskSection:
    name: str = option(
        "regression", "regression, denoise or deblur", "str", flag="--task",
        choices=("regression", "denoise", "deblur"),
    )  # fmt: skip
    noise: float | None = option(None, "noise std in /255 units (denoise 10, deblur 3)", "float")
    blur: float | None = option(None, "Gaussian blur sigma in pixels (deblur; 3)", "float")
    beta: float | None = option(None, "TV coupling beta (the authors' choice per task)", "float")
    lam: float | None = option(
        None, "TV weight lambda (the authors' choice per task)", "float", flag="--lambda",
        key="lambda",
    )  # fmt: skip
    noise_seed: int = option(0, "seed of the observation's noise", "int")


@dataclass
class ModelSection:
    kind: str = option("mgdl", "mgdl, or the sgdl baseline", "str", flag="--model",
                       choices=("mgdl", "sgdl"))  # fmt: skip
    preset: str = option(
        "auto", "quick: short runs on Fourier features; paper: the papers' protocol; colour: "
        "Fang & Xu's colour protocol; auto: paper on CUDA, quick on CPU", "str",
        choices=("auto", *PRESETS),
    )  # fmt: skip
    grades: int | str | None = option(
        None, "grades (SGDL: grades x layers hidden layers); auto: add grades while the "
        "validation PSNR gains at least --min-gain dB, up to --max-grades", "grades",
    )  # fmt: skip
    width: int | list[int] | None = option(None, "hidden width, or one per grade", "ints")
    layers: int | list[int] | None = option(None, "hidden layers, or one per grade", "ints")
    max_grades: int = option(8, "most grades for --grades auto", "int")
    min_gain: float = option(0.1, "dB a grade must add for another (--grades auto)", "float")
    encoding: str | None = option(
        None, "grade 1's input: none (the papers' coordinates), fourier or positional", "str",
        choices=("none", "fourier", "positional"),
    )  # fmt: skip
    frequencies: int | None = option(None, "encoding frequencies m (2m inputs)", "int")
    sigma: float | None = option(None, "fourier: std of the frequencies", "float")


@dataclass
class TrainingSection:
    epochs: int | list[int] | None = option(
        None, "epochs per grade, or one per grade (SGDL: in total)", "ints"
    )
    lr: float | list[float] | None = option(
        None, "learning rate, or one per grade like 1e-3,1e-3,5e-4,5e-4", "floats"
    )
    optimizer: str = option("adam", "adam or gd", "str", choices=("adam", "gd"))
    early_stop: bool = option(True, "the papers' validation early stop", "bool", negate=True)
    record_every: int | None = option(None, "epochs between records", "int")
    test_every: int | None = option(None, "epochs between test records", "int")
    seed: int = option(0, "initialisation seed, the same for each grade", "int")
    cache_dtype: str = option(
        "auto", "cached features' dtype (auto: bf16 where grades compute in bf16)", "str",
        choices=("auto", "fp32", "bf16"),
    )  # fmt: skip
    feature_cache: bool = option(
        True, "cache frozen grades' features (off: recompute them every epoch)", "bool",
        negate=True,
    )  # fmt: skip
    time_budget: float | None = option(
        None, "seconds of training for the whole fit: each grade's epochs are chosen from its "
        "measured speed, never more than --epochs (e.g. 60s, 2m; given --epochs, the preset's "
        "budget is dropped)", "seconds",
    )  # fmt: skip
    on_diverge: str = option(
        "stop", "stop, or retry a diverged grade at half the lr (up to 3 times)", "str",
        choices=("stop", "retry"),
    )  # fmt: skip


@dataclass
class ResourcesSection:
    device: str = option("auto", "cpu, cuda, cuda:N or auto", "str")
    backend: str | None = option(
        None, "torch, triton, cuda or auto (default: $MGDL_FAST_BACKEND, else auto)", "str"
    )
    precision: str | None = option(
        None, "products: auto, fp32, tf32 or bf16 (default: $MGDL_FAST_PRECISION, else auto)",
        "str", choices=("auto", "fp32", "tf32", "bf16"),
    )  # fmt: skip
    deterministic: bool | None = option(
        None, "fixed-order gradient sums (default: $MGDL_FAST_DETERMINISTIC, else true); "
        "--nondeterministic: kernels may sum with atomics", "bool", flag="--nondeterministic",
        negate=True,
    )  # fmt: skip
    cuda_graph: bool | None = option(
        None, "replay epochs from CUDA graphs where the backend allows", "bool", negate=True
    )
    stream: str = option(
        "auto", "bounded-memory grades: image read lazily, coordinates per chunk, gradients "
        "summed over chunks (auto: when the run would not fit otherwise)", "str",
        choices=("auto", "on", "off"),
    )  # fmt: skip
    feature_store: str = option(
        "auto", "where cached features live: memory, disk (in the run) or host (pinned, CUDA); "
        "auto: memory if it fits, else disk or host", "str",
        choices=("auto", "memory", "disk", "host"),
    )  # fmt: skip
    max_memory: str | None = option(
        None, "refuse a run whose estimated peak memory per rank is above this (e.g. 6G; "
        "default: the available memory less 10%, at least 1 GB)", "str",
    )  # fmt: skip


@dataclass
class OutputsSection:
    out: str | None = option(None, "output directory (default: runs/<image>[_<task>]_<model>)",
                             "str")  # fmt: skip
    checkpoint_every: int | None = option(
        None, "save the grade in progress every N epochs (default: after each minute of work)",
        "int",
    )  # fmt: skip
    quiet: bool = option(False, "no progress bar or lines, a line per grade", "bool")


SECTIONS = {
    "input": InputSection,
    "task": TaskSection,
    "model": ModelSection,
    "training": TrainingSection,
    "resources": ResourcesSection,
    "outputs": OutputsSection,
}


@dataclass
class RunConfig:
    """A fit, described whole. ``RunConfig.load(path)`` reads a TOML file, ``overridden``
    applies options on top, ``to_toml`` writes it back."""

    input: InputSection = field(default_factory=InputSection)
    task: TaskSection = field(default_factory=TaskSection)
    model: ModelSection = field(default_factory=ModelSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    resources: ResourcesSection = field(default_factory=ResourcesSection)
    outputs: OutputsSection = field(default_factory=OutputsSection)

    @classmethod
    def load(cls, path: str) -> RunConfig:
        """The description a TOML file gives (unset fields: their defaults)."""
        return cls().overridden(read_toml(path))

    @classmethod
    def load_dict(cls, raw: dict, source: str = "run description") -> RunConfig:
        """The description ``{section: {key: value}}`` gives, checked as a TOML file is."""
        return cls().overridden(checked(raw, source))

    def overridden(self, values: dict[str, dict[str, Any]]) -> RunConfig:
        """A copy with ``values`` (``{section: {field: value}}``, checked) set."""
        merged = asdict(self)
        for section, entries in values.items():
            merged[section].update(entries)
        return RunConfig(**{name: SECTIONS[name](**merged[name]) for name in SECTIONS})

    def given(self) -> dict[str, dict[str, Any]]:
        """The fields that differ from their defaults, ``{section: {field: value}}``."""
        out: dict[str, dict[str, Any]] = {}
        for name, cls in SECTIONS.items():
            section = getattr(self, name)
            for f in fields(cls):
                value = getattr(section, f.name)
                if value != (f.default if f.default is not MISSING else None):
                    out.setdefault(name, {})[f.name] = value
        return out

    def to_toml(self, comment: str = "") -> str:
        """TOML of every set field (``None``: left out), under a ``#`` comment."""
        doc = {}
        for name, cls in SECTIONS.items():
            section = getattr(self, name)
            entries = {
                f.metadata.get("key", f.name): getattr(section, f.name)
                for f in fields(cls)
                if getattr(section, f.name) is not None
            }
            if entries:
                doc[name] = entries
        head = "".join(f"# {line}\n" for line in comment.splitlines())
        return head + tomli_w.dumps(doc)


def read_toml(path: str) -> dict[str, dict[str, Any]]:
    """A TOML run description as checked ``{section: {field: value}}``."""
    try:
        with open(path, "rb") as fh:
            raw = tomllib.load(fh)
    except FileNotFoundError:
        raise InputError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: not a readable TOML file: {exc}") from None
    return checked(raw, path)


def checked(raw: dict, source: str) -> dict[str, dict[str, Any]]:
    """``raw`` with TOML keys mapped to fields; an unknown key or a value of the wrong kind is
    refused in one line naming it."""
    out: dict[str, dict[str, Any]] = {}
    for section, entries in raw.items():
        if section not in SECTIONS:
            raise InputError(f"{source}: unknown section [{section}]; use {', '.join(SECTIONS)}")
        if not isinstance(entries, dict):
            raise InputError(f"{source}: {section} must be a table ([{section}])")
        by_key = {f.metadata.get("key", f.name): f for f in fields(SECTIONS[section])}
        for key, value in entries.items():
            if key not in by_key:
                known = ", ".join(by_key)
                raise InputError(f"{source}: unknown key {section}.{key}; {section} has {known}")
            f = by_key[key]
            why = kind_error(f.metadata["kind"], value, f.metadata.get("choices"))
            if why:
                raise InputError(f"{source}: {section}.{key} must be {why}, got {value!r}")
            out.setdefault(section, {})[f.name] = value
    return out


def kind_error(kind: str, value: Any, choices: tuple | None = None) -> str | None:
    """Why ``value`` is not of ``kind`` (None: it is)."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    is_number = is_int or isinstance(value, float)
    simple = {
        "int": (is_int, "an integer"),
        "float": (is_number, "a number"),
        "seconds": (is_number, "a number of seconds"),
        "bool": (isinstance(value, bool), "true or false"),
        "grades": (is_int or value == "auto", "an integer or \"auto\""),
        "crop": (isinstance(value, list) and len(value) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value), "[H, W]"),
        "ints": (is_int or (isinstance(value, list) and value and all(
            isinstance(v, int) and not isinstance(v, bool) for v in value)),
            "an integer or a list of them"),
        "floats": (is_number or (isinstance(value, list) and value and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)),
            "a number or a list of them"),
    }  # fmt: skip
    if kind == "str":
        if not isinstance(value, str):
            return "a string"
        return f"one of {', '.join(choices)}" if choices and value not in choices else None
    ok, what = simple[kind]
    return None if ok else what


__all__ = [
    "SECTIONS",
    "InputSection",
    "ModelSection",
    "OutputsSection",
    "ResourcesSection",
    "RunConfig",
    "TaskSection",
    "TrainingSection",
    "read_toml",
]

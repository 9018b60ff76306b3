"""Model and training configuration, validated on construction with one-line errors."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace

import torch

from ..backends import requested_backend
from ..backends.base import PRECISIONS, Options
from ..backends.torch.bf16 import cpu_bf16_reason
from ..block import INIT_SCHEMES
from ..encoding import EncodingConfig
from ..errors import InputError

MODEL_KINDS = ("mgdl", "sgdl")
OPTIMIZERS = ("adam", "gd")
CACHE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
# Where a frozen grade's features go: memory (the device), disk (files in the work directory,
# read by chunks) or host (pinned host memory for a CUDA grade; memory on a CPU).
FEATURE_STORES = ("memory", "disk", "host")


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite_positive(value) -> bool:
    return (
        isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value < float("inf")
    )


def per_grade(value, k: int):
    """Grade k's (0-based) entry of a per-grade setting: a scalar for every grade, or a list
    whose last entry also serves the grades after it."""
    return value[min(k, len(value) - 1)] if isinstance(value, list) else value


def _check_per_grade(name: str, value, valid, what: str) -> None:
    values = value if isinstance(value, list) else [value]
    _require(
        len(values) >= 1 and all(valid(v) for v in values),
        f"{name} must be {what} or a list of them, one per grade, got {value!r}",
    )


def _positive_int(v) -> bool:
    return _is_int(v) and v >= 1


@dataclass
class ModelConfig:
    """Architecture. MGDL: ``grades`` blocks; grade k has ``layers`` hidden ReLU layers of
    ``width`` (each a scalar, or a list with one entry per grade). SGDL: one block of
    ``grades * layers`` hidden layers of ``width``, trained end to end.

    ``grades="auto"`` (MGDL) adds grades, up to ``max_grades``, while the newest one raises
    the validation PSNR by at least ``min_gain_db`` (S-MGDL's rule, with a threshold).
    ``encoding`` ("none", "fourier", "positional") encodes the coordinates grade 1 reads, with
    ``frequencies``, ``sigma`` and ``encoding_seed`` (mgdl_fast/encoding.py).
    """

    kind: str = "mgdl"
    grades: int | str = 4
    width: int | list[int] = 128
    layers: int | list[int] = 2
    max_grades: int = 8
    min_gain_db: float = 0.1
    encoding: str = "none"
    frequencies: int = 64
    sigma: float = 5.0
    encoding_seed: int = 0

    def __post_init__(self) -> None:
        _require(self.kind in MODEL_KINDS, f"model must be one of {MODEL_KINDS}, got {self.kind!r}")
        _require(
            _positive_int(self.grades) or self.grades == "auto",
            f"grades must be an integer >= 1 or auto, got {self.grades!r}",
        )
        _require(
            _positive_int(self.max_grades), f"max_grades must be >= 1, got {self.max_grades!r}"
        )
        _require(
            isinstance(self.min_gain_db, (int, float)) and math.isfinite(self.min_gain_db),
            f"min_gain_db must be a finite number, got {self.min_gain_db!r}",
        )
        for name in ("width", "layers"):
            value = getattr(self, name)
            _check_per_grade(name, value, _positive_int, "an integer >= 1")
            if isinstance(value, list):
                _require(self.kind == "mgdl", f"per-grade {name} lists apply to MGDL only")
                _require(
                    len(value) <= self.planned_grades,
                    f"{name} lists {len(value)} values for {self.planned_grades} grades",
                )
        _require(self.kind == "mgdl" or self.grades != "auto", "grades auto applies to MGDL only")
        self.encoding_config()

    def encoding_config(self) -> EncodingConfig:
        return EncodingConfig(self.encoding, self.frequencies, self.sigma, self.encoding_seed)

    @property
    def adaptive(self) -> bool:
        return self.grades == "auto"

    @property
    def planned_grades(self) -> int:
        """The grades to train (the most, for ``grades="auto"``)."""
        return self.max_grades if self.grades == "auto" else int(self.grades)

    def width_of(self, k: int) -> int:
        return per_grade(self.width, k)

    def layers_of(self, k: int) -> int:
        return per_grade(self.layers, k)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainConfig:
    """Full-batch training of each grade (PROTOCOL 2 defaults).

    ``epochs`` is per grade for MGDL and the total for SGDL (equal compute); ``lr`` and
    ``epochs`` may be lists with one entry per grade (``for_grade`` picks one). Train and
    validation losses are recorded every ``record_every`` epochs and the test loss every
    ``test_every``; early stopping averages the last ``smooth_window`` validation losses every
    ``record_every * smooth_window`` epochs and stops when the relative change is below
    ``rel_tol``. ``cache_dtype`` 'auto' caches features in bf16 on CUDA and fp32 on CPU.
    ``init`` draws each new block's parameters from ``seed``: 'glorot' (the regression and
    restoration papers' init) or 'he' (PROTOCOL 4 and 6: the synthetic and eigenvalue codes').

    ``stream`` bounds memory for images larger than it: every call of a grade (steps
    included) covers at most ``chunk_size`` rows, gradients summed over the chunks, and grade
    1's coordinates are made per chunk; ``feature_store`` says where cached features live.

    ``backend`` (None: ``$MGDL_FAST_BACKEND``, else auto), ``precision`` and ``deterministic``
    (None: ``$MGDL_FAST_PRECISION`` / ``$MGDL_FAST_DETERMINISTIC``, else auto / True) choose how
    every grade is bound; they are resolved once, here. ``cuda_graph`` None captures each
    K-epoch block between records in a CUDA graph when the bound backend and the objective
    allow it; False never does.

    ``time_budget_s`` (None: none) bounds the seconds a ``train.fit`` spends training: the
    configured epochs become each grade's most, and each grade chooses its epochs from its
    measured speed (``train.budget``).
    """

    epochs: int | list[int] = 10_000
    lr: float | list[float] = 1e-3
    optimizer: str = "adam"
    early_stopping: bool = True
    record_every: int = 10
    smooth_window: int = 20
    rel_tol: float = 1e-4
    test_every: int = 50
    seed: int = 0
    init: str = "glorot"
    device: str = "auto"
    backend: str | None = None
    precision: str | None = None
    deterministic: bool | None = None
    cuda_graph: bool | None = None
    cache_dtype: str = "auto"
    feature_cache: bool = True
    chunk_size: int = 1 << 16
    stream: bool = False
    feature_store: str = "memory"
    time_budget_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("record_every", "smooth_window", "test_every", "chunk_size"):
            value = getattr(self, name)
            _require(
                _is_int(value) and value >= 1, f"{name} must be an integer >= 1, got {value!r}"
            )
        _check_per_grade("epochs", self.epochs, _positive_int, "an integer >= 1")
        _check_per_grade("learning rate", self.lr, _finite_positive, "a finite number > 0")
        _require(
            self.time_budget_s is None or _finite_positive(self.time_budget_s),
            f"time budget must be a finite number of seconds > 0, got {self.time_budget_s!r}",
        )
        _require(self.rel_tol >= 0, f"rel_tol must be >= 0, got {self.rel_tol!r}")
        _require(
            _is_int(self.seed) and 0 <= self.seed < 2**63,
            f"seed must be an integer from 0 to 2**63 - 1, got {self.seed!r}",
        )
        _require(
            self.init in INIT_SCHEMES, f"init must be one of {INIT_SCHEMES}, got {self.init!r}"
        )
        _require(
            self.optimizer in OPTIMIZERS,
            f"optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}",
        )
        _require(
            self.precision in (None, *PRECISIONS),
            f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}",
        )
        _require(
            self.cuda_graph in (None, True, False),
            f"cuda_graph must be None, True or False, got {self.cuda_graph!r}",
        )
        self.backend = requested_backend(self.backend)
        options = Options.from_env(self.precision, self.deterministic)
        self.precision, self.deterministic = options.precision, options.deterministic
        _require(
            self.feature_store in FEATURE_STORES,
            f"feature_store must be one of {', '.join(FEATURE_STORES)}, got {self.feature_store!r}",
        )
        _require(
            isinstance(self.stream, bool), f"stream must be True or False, got {self.stream!r}"
        )
        _require(
            self.cache_dtype in ("auto", *CACHE_DTYPES),
            f"cache dtype must be auto, fp32 or bf16, got {self.cache_dtype!r}",
        )

    def for_grade(self, k: int) -> TrainConfig:
        """This configuration with grade k's (0-based) learning rate and epochs."""
        return replace(self, lr=per_grade(self.lr, k), epochs=per_grade(self.epochs, k))

    def check_grades(self, grades: int) -> None:
        """Refuse per-grade lists longer than the grades they are for."""
        for name in ("lr", "epochs"):
            value = getattr(self, name)
            _require(
                not isinstance(value, list) or len(value) <= grades,
                f"{name} lists {len(value) if isinstance(value, list) else 1} values for "
                f"{grades} grades",
            )

    def options(self) -> Options:
        """The backend options every grade binds with."""
        return Options(self.precision or "auto", bool(self.deterministic))

    def torch_device(self) -> torch.device:
        """The training device; raises InputError when it is not usable here."""
        return resolve_device(self.device)

    def feature_dtype(self, device: torch.device) -> torch.dtype:
        """The cached features' dtype: ``auto`` is bf16 on CUDA, and on a CPU when its grades
        compute in bf16 (``precision`` bf16, or auto on a CPU with bf16 instructions), so that
        no epoch converts the features; fp32 otherwise."""
        if self.cache_dtype != "auto":
            return CACHE_DTYPES[self.cache_dtype]
        if device.type == "cuda" or self.precision == "bf16":
            return torch.bfloat16
        if self.precision == "auto" and cpu_bf16_reason() is None:
            return torch.bfloat16
        return torch.float32

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; ``cpu:N`` is the one CPU device; otherwise
    check the named device exists."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0].strip() == "cpu":
        name = "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"device {name!r} requested but no CUDA device is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise InputError(
                f"device {name!r} requested but only {torch.cuda.device_count()} CUDA devices exist"
            )
    elif device.type != "cpu":
        raise InputError(f"device {name!r} is not supported; use cpu, cuda, cuda:N or auto")
    return device

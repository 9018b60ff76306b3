"""Model and training configuration, validated on construction with one-line errors."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ..backends import requested_backend
from ..backends.base import PRECISIONS, Options
from ..block import INIT_SCHEMES
from ..errors import InputError

MODEL_KINDS = ("mgdl", "sgdl")
OPTIMIZERS = ("adam", "gd")
CACHE_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass
class ModelConfig:
    """Architecture. MGDL: ``grades`` blocks of ``layers`` hidden ReLU layers of ``width``.
    SGDL: one block of ``grades * layers`` hidden layers trained end to end."""

    kind: str = "mgdl"
    grades: int = 4
    width: int = 128
    layers: int = 2

    def __post_init__(self) -> None:
        _require(self.kind in MODEL_KINDS, f"model must be one of {MODEL_KINDS}, got {self.kind!r}")
        for name in ("grades", "width", "layers"):
            value = getattr(self, name)
            _require(
                _is_int(value) and value >= 1, f"{name} must be an integer >= 1, got {value!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainConfig:
    """Full-batch training of each grade (PROTOCOL 2 defaults).

    ``epochs`` is per grade for MGDL and the total for SGDL (equal compute). Train and
    validation losses are recorded every ``record_every`` epochs and the test loss every
    ``test_every``; early stopping averages the last ``smooth_window`` validation losses every
    ``record_every * smooth_window`` epochs and stops when the relative change is below
    ``rel_tol``. ``cache_dtype`` 'auto' caches features in bf16 on CUDA and fp32 on CPU.
    ``init`` draws each new block's parameters from ``seed``: 'glorot' (the regression and
    restoration papers' init) or 'he' (PROTOCOL 4 and 6: the synthetic and eigenvalue codes').

    ``backend`` (None: ``$MGDL_FAST_BACKEND``, else auto), ``precision`` and ``deterministic``
    (None: ``$MGDL_FAST_PRECISION`` / ``$MGDL_FAST_DETERMINISTIC``, else auto / True) choose how
    every grade is bound; they are resolved once, here. ``cuda_graph`` None captures each
    K-epoch block between records in a CUDA graph when the bound backend and the objective
    allow it; False never does.
    """

    epochs: int = 10_000
    lr: float = 1e-3
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

    def __post_init__(self) -> None:
        for name in ("epochs", "record_every", "smooth_window", "test_every", "chunk_size"):
            value = getattr(self, name)
            _require(
                _is_int(value) and value >= 1, f"{name} must be an integer >= 1, got {value!r}"
            )
        _require(
            isinstance(self.lr, (int, float))
            and self.lr > 0
            and self.lr == self.lr
            and self.lr != float("inf"),
            f"learning rate must be a finite number > 0, got {self.lr!r}",
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
            self.cache_dtype in ("auto", *CACHE_DTYPES),
            f"cache dtype must be auto, fp32 or bf16, got {self.cache_dtype!r}",
        )

    def options(self) -> Options:
        """The backend options every grade binds with."""
        return Options(self.precision or "auto", bool(self.deterministic))

    def torch_device(self) -> torch.device:
        """The training device; raises InputError when it is not usable here."""
        return resolve_device(self.device)

    def feature_dtype(self, device: torch.device) -> torch.dtype:
        if self.cache_dtype == "auto":
            return torch.bfloat16 if device.type == "cuda" else torch.float32
        return CACHE_DTYPES[self.cache_dtype]

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when available else cpu; otherwise check the named device exists."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
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

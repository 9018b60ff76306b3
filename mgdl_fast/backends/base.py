"""The contract every backend extends: what it declares it serves, the one list of reasons it
cannot, the options a grade binds with, and the input checks every backend shares.

A backend is a ``Backend`` subclass with a ``name`` and ``Capabilities``. Its
``not_supported_reasons`` starts from the shared checks of the declared capabilities
(``super().not_supported_reasons(...)``) and adds what only it knows (a shared-memory plan, the
Triton interpreter). ``bind`` turns a served request into an ``Engine`` (see engine.py) whose
per-epoch calls do arithmetic only.
"""

from __future__ import annotations

import inspect
import os
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

from ..block import BlockShape
from ..errors import InputError

if TYPE_CHECKING:
    from .engine import Engine, EngineMemory

# "auto" lets each backend take its own default (see Backend.default_precision); "fp32" means
# fp32 products (Triton's ieee), "tf32" TF32 tensor-core products, "bf16" bf16 operands. Every
# precision accumulates in fp32.
PRECISIONS = ("auto", "fp32", "tf32", "bf16")
PRECISION_ENV = "MGDL_FAST_PRECISION"
DETERMINISTIC_ENV = "MGDL_FAST_DETERMINISTIC"
INPUT_DTYPES = (torch.float32, torch.bfloat16)
DTYPE_POLICY = (
    "inputs are fp32 (coordinates) or bf16 (cached features), targets and parameters fp32"
)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass(frozen=True)
class Options:
    """How a grade's kernels compute: the product ``precision`` and whether gradient sums are
    ``deterministic`` (a fixed reduction order: bit-identical reruns). Read once, from the
    arguments or else ``$MGDL_FAST_PRECISION`` / ``$MGDL_FAST_DETERMINISTIC``."""

    precision: str = "auto"
    deterministic: bool = True

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InputError(
                f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )
        if not isinstance(self.deterministic, bool):
            raise InputError(f"deterministic must be True or False, got {self.deterministic!r}")

    @classmethod
    def from_env(cls, precision: str | None = None, deterministic: bool | None = None) -> Options:
        """Options from the arguments, falling back to the environment, then the defaults."""
        precision = precision or os.environ.get(PRECISION_ENV) or "auto"
        if deterministic is None:
            env = os.environ.get(DETERMINISTIC_ENV)
            if env not in (None, "", "0", "1"):
                raise InputError(f"{DETERMINISTIC_ENV} must be 0 or 1, got {env!r}")
            deterministic = env != "0"
        return cls(precision, deterministic)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Capabilities:
    """What a backend declares it serves. ``None`` limits mean "any".

    ``max_small_in_dim``: the block's input dim must be at most this (grade 1 reads 1-3
    coordinates) or equal its width (later grades read the previous grade's features).
    """

    device_types: tuple[str, ...]
    auto_device_types: tuple[str, ...]
    input_dtypes: tuple[torch.dtype, ...]
    precisions: tuple[str, ...]
    widths: tuple[int, ...] | None = None
    max_hidden_layers: int | None = None
    max_small_in_dim: int | None = None
    max_out_dim: int | None = None
    cuda_graphs: bool = False

    def describe_widths(self) -> str:
        widths = self.widths or ()
        steps = {b - a for a, b in zip(widths, widths[1:])}
        if len(widths) > 4 and len(steps) == 1:
            return f"multiples of {steps.pop()} from {widths[0]} to {widths[-1]}"
        return ", ".join(map(str, widths))


class Backend(ABC):
    """One implementation of a grade's ops. Subclasses set ``name`` and ``capabilities`` and
    implement ``_bind``; they extend ``unavailable_reason`` and ``not_supported_reasons``."""

    name: ClassVar[str]

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """What this backend serves (a property: the CUDA backend reads it from ``_C``)."""

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run at all on this machine, or None."""
        return None

    def default_precision(self, input_dtype: torch.dtype) -> str:
        """The precision ``auto`` means for this backend and input dtype."""
        return self.capabilities.precisions[0]

    def resolve_options(self, options: Options, input_dtype: torch.dtype) -> Options:
        """``options`` with ``auto`` replaced by this backend's concrete precision."""
        if options.precision != "auto":
            return options
        return Options(self.default_precision(input_dtype), options.deterministic)

    def not_supported_reasons(
        self,
        shape: BlockShape,
        device: torch.device,
        input_dtype: torch.dtype,
        options: Options,
    ) -> list[str]:
        """Every reason this backend cannot serve a grade of ``shape`` reading ``input_dtype``
        inputs on ``device`` with ``options`` (empty: it can). Subclasses call this first and
        append their own."""
        caps, why = self.capabilities, []
        if device.type not in caps.device_types:
            why.append(f"runs on {'/'.join(caps.device_types)} tensors, not {device.type}")
        if input_dtype not in caps.input_dtypes:
            allowed = ", ".join(dtype_name(d) for d in caps.input_dtypes)
            why.append(f"input dtype {dtype_name(input_dtype)} is not one of {allowed}")
        if caps.widths is not None and shape.width not in caps.widths:
            why.append(f"width {shape.width} is not one of {caps.describe_widths()}")
        if caps.max_hidden_layers is not None and shape.hidden_layers > caps.max_hidden_layers:
            why.append(f"{shape.hidden_layers} hidden layers (at most {caps.max_hidden_layers})")
        small = caps.max_small_in_dim
        if small is not None and not (shape.in_dim <= small or shape.in_dim == shape.width):
            why.append(f"input dim {shape.in_dim} is neither 1-{small} nor the width {shape.width}")
        if caps.max_out_dim is not None and shape.out_dim > caps.max_out_dim:
            why.append(f"{shape.out_dim} output channels (at most {caps.max_out_dim})")
        if options.precision != "auto" and options.precision not in caps.precisions:
            why.append(f"precision {options.precision} is not one of {', '.join(caps.precisions)}")
        return why

    def launch_geometry(
        self, shape: BlockShape, device: torch.device, input_dtype: torch.dtype, options: Options
    ) -> tuple[int, int]:
        """(rows per tile, programs of a launch that fills ``device``) of the training kernel
        for this request, without binding: the self-check sizes its row counts from them."""
        return 16, 1

    @abstractmethod
    def memory(
        self, shape: BlockShape, device: torch.device, input_dtype: torch.dtype, options: Options
    ) -> EngineMemory:
        """What an engine bound for this request allocates (``auto`` precision: the most any
        choice would), found without binding, allocating or launching anything."""

    def source_files(self) -> list[Path]:
        """The files whose contents decide what this backend computes (a stored self-check
        verdict is valid only while they are unchanged)."""
        return [Path(inspect.getfile(type(self)))]

    def bind(
        self,
        shape: BlockShape,
        device: torch.device,
        input_dtype: torch.dtype,
        rows: int,
        options: Options,
    ) -> Engine:
        """An engine for this request; the caller has checked it is served."""
        resolved = self.resolve_options(options, input_dtype)
        return self._bind(shape, device, input_dtype, rows, resolved)

    @abstractmethod
    def _bind(
        self,
        shape: BlockShape,
        device: torch.device,
        input_dtype: torch.dtype,
        rows: int,
        options: Options,
    ) -> Engine:
        """Plans, launch arguments and buffers for up to ``rows`` rows per call."""


def check_tensor(
    name: str,
    t: object,
    *,
    rows: int | None,
    cols: int,
    dtypes: tuple[torch.dtype, ...],
    device: torch.device,
) -> None:
    """The checks every backend shares for an ``[N, cols]`` operand (``rows`` None: any N >= 1):
    one ``InputError`` naming the operand and the problem."""
    if not isinstance(t, torch.Tensor):
        raise InputError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise InputError(f"{name} must be 2-D [N, {cols}], got shape {list(t.shape)}")
    if t.shape[1] != cols:
        raise InputError(f"{name} must have {cols} columns, got shape {list(t.shape)}")
    if t.shape[0] < 1:
        raise InputError(f"{name} has no rows")
    if rows is not None and t.shape[0] != rows:
        raise InputError(f"{name} must have {rows} rows, got {t.shape[0]}")
    if t.dtype not in dtypes:
        allowed = " or ".join(dtype_name(d) for d in dtypes)
        raise InputError(f"{name} dtype {dtype_name(t.dtype)} is not {allowed} ({DTYPE_POLICY})")
    if t.device != device:
        raise InputError(f"{name} is on {t.device} but the grade is bound to {device}")
    if not t.is_contiguous():
        raise InputError(f"{name} is not contiguous (call .contiguous())")


def check_params(flat: object, shape: BlockShape, device: torch.device) -> None:
    """The flat parameter vector of a block of ``shape``: ``[P]`` fp32, contiguous, on
    ``device``."""
    if not isinstance(flat, torch.Tensor):
        raise InputError(f"parameters must be a torch.Tensor, got {type(flat).__name__}")
    if tuple(flat.shape) != (shape.num_params,):
        raise InputError(
            f"parameters must be [{shape.num_params}] for a {shape_name(shape)} block, "
            f"got {list(flat.shape)}"
        )
    if flat.dtype != torch.float32:
        raise InputError(f"parameters dtype {dtype_name(flat.dtype)} is not float32")
    if flat.device != device:
        raise InputError(f"parameters are on {flat.device} but the grade is bound to {device}")
    if not flat.is_contiguous():
        raise InputError("parameters are not contiguous")


def shape_name(shape: BlockShape) -> str:
    """``[D, W x L, C]``, the way the papers write a block."""
    return f"[{shape.in_dim}, {shape.width} x {shape.hidden_layers}, {shape.out_dim}]"

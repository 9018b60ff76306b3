"""A grade's ops bound once: the object every training-time caller uses.

``bind`` (in ``mgdl_fast.backends``) checks a request once, picks the backend, resolves the
options and builds an ``Engine``: its launch plans and every buffer it needs for up to ``rows``
rows per call are made there. ``forward``, ``step``, ``backward`` and ``update`` then validate
nothing, read no environment, plan nothing and allocate nothing, which is what lets a K-epoch
block be captured in a CUDA graph. Parameters, gradients and optimizer state belong to the
caller (the same tensors every epoch), so one engine serves every subnet of an MSDL model too.

Callers check their operands once with ``Engine.validate`` (the checks every backend shares);
the per-epoch calls trust them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from ..block import BlockShape
from ..errors import InputError
from .base import INPUT_DTYPES, Options, check_params, check_tensor, shape_name


@dataclass
class Counters:
    """How often engines were bound, planned launches and allocated buffers (for tests that
    prove a training epoch does none of it), and the buffers' bytes (for the memory model)."""

    binds: int = 0
    plans: int = 0
    buffers: int = 0
    buffer_bytes: int = 0


counters = Counters()
# Set by mgdl_fast.testing.poison_buffers(): every engine buffer starts as NaN, so a kernel
# that reads an element it never wrote poisons its result.
_poison_buffers = False


def buffer(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """An engine-owned buffer (uninitialised; NaN under ``testing.poison_buffers``)."""
    counters.buffers += 1
    t = torch.empty(shape, dtype=dtype, device=device)
    counters.buffer_bytes += t.numel() * t.element_size()
    if _poison_buffers and dtype.is_floating_point and t.device.type != "meta":
        t.fill_(float("nan"))
    return t


@dataclass(frozen=True)
class EngineMemory:
    """The bytes an engine of one bound plan allocates for ``rows`` rows per call:
    ``fixed + per_row * rows`` (what the memory planner reads, without binding)."""

    fixed: int
    per_row: int

    def bytes(self, rows: int) -> int:
        return self.fixed + self.per_row * rows


# Row counts the buffers are laid out for when measured: past every per-row limit (a launch's
# programs saturate at the SM count), where the buffers grow linearly in the rows.
_MEASURE_ROWS = (1 << 20, 1 << 21)


def measure_buffers(allocate) -> EngineMemory:
    """The buffers ``allocate(rows, device)`` makes through ``buffer`` for the meta device:
    shapes and dtypes only, nothing allocated; the counters are left as they were."""
    saved = (counters.buffers, counters.buffer_bytes)
    sizes = []
    try:
        for rows in _MEASURE_ROWS:
            before = counters.buffer_bytes
            allocate(rows, torch.device("meta"))
            sizes.append(counters.buffer_bytes - before)
    finally:
        counters.buffers, counters.buffer_bytes = saved
    per_row = (sizes[1] - sizes[0]) // (_MEASURE_ROWS[1] - _MEASURE_ROWS[0])
    return EngineMemory(sizes[0] - per_row * _MEASURE_ROWS[0], per_row)


def count_plan() -> None:
    """Backends call this wherever they plan launches (tile configs, grids, workspaces)."""
    counters.plans += 1


class OptimState:
    """A grade's optimizer state on its device: Adam's moments ``[numel]`` and the step
    counter with the step-dependent scalars, all device tensors, advanced by device ops so a
    K-epoch block needs no host value (and a CUDA graph replays correct bias corrections).

    Adam as jax.example_libraries.optimizers.adam:
    ``x -= step_size * m / (sqrt(v / bias_correction2) + eps)`` with
    ``step_size = lr / (1 - beta1^t)`` and ``bias_correction2 = 1 - beta2^t`` in float64.
    """

    def __init__(
        self,
        kind: str,
        lr: float,
        numel: int,
        device: torch.device,
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        scratch: int = 0,
    ):
        if kind not in ("adam", "gd"):
            raise InputError(f"optimizer must be adam or gd, got {kind!r}")
        self.kind, self.lr, self.numel = kind, float(lr), numel
        self.beta1, self.beta2, self.eps = beta1, beta2, eps
        f64 = torch.float64
        self.step = torch.zeros((), dtype=f64, device=device)
        self.step_size = torch.zeros((), dtype=f64, device=device)
        self.bias_correction2 = torch.zeros((), dtype=f64, device=device)
        self._power = torch.zeros((), dtype=f64, device=device)
        # Constants as 0-dim tensors: an op with a Python scalar operand wraps it in a fresh
        # tensor on every call, which is an allocation per epoch.
        self._one = torch.ones((), dtype=f64, device=device)
        self.beta2_f32 = torch.full((), beta2, device=device)
        self.eps_f32 = torch.full((), eps, device=device)
        if kind == "adam":
            self.exp_avg = torch.zeros(numel, device=device)
            self.exp_avg_sq = torch.zeros(numel, device=device)
        # Backend scratch for the update, [scratch, numel] fp32 (the torch backend's temporaries).
        self.scratch = torch.empty(scratch, numel, device=device)

    def advance(self) -> None:
        """``t += 1`` and the scalars of step t, on the device."""
        self.step.add_(self._one)
        if self.kind == "adam":
            self._scalars()

    def _scalars(self) -> None:
        torch.pow(self.beta1, self.step, out=self._power)
        torch.sub(self._one, self._power, out=self._power)
        self.step_size.fill_(self.lr).div_(self._power)
        torch.pow(self.beta2, self.step, out=self._power)
        torch.sub(self._one, self._power, out=self.bias_correction2)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The tensors a checkpoint needs to continue this state."""
        tensors = {"step": self.step}
        if self.kind == "adam":
            tensors |= {"exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq}
        return tensors

    def load_state_dict(self, tensors: dict[str, torch.Tensor]) -> None:
        for name, value in tensors.items():
            getattr(self, name).copy_(value)
        if self.kind == "adam":
            self._scalars()


class Engine(ABC):
    """The ops of one grade on one backend, bound for ``shape``, ``device``, ``input_dtype``,
    at most ``rows`` rows per call, and resolved ``options``.

    Shapes: ``x [n, D]`` (n <= rows, ``input_dtype``), ``y``/``out``/``grad_out [n, C]`` fp32,
    ``features_out [n, W]`` fp32 or bf16, ``params``/``grad`` flat ``[P]`` fp32 (BlockParams
    layout). ``step`` returns a 0-dim fp32 device tensor owned by the engine (the next step
    overwrites it).
    """

    def __init__(
        self,
        backend: str,
        shape: BlockShape,
        device: torch.device,
        input_dtype: torch.dtype,
        rows: int,
        options: Options,
        *,
        capturable: bool = False,
    ):
        counters.binds += 1
        self.backend, self.shape, self.device = backend, shape, device
        self.input_dtype, self.rows, self.options = input_dtype, rows, options
        self.capturable = capturable
        # Set by bind under auto: the kernel self-checks run and the backends passed over.
        self.self_check: dict | None = None
        self.auto_skipped: dict[str, list[str]] = {}

    @abstractmethod
    def forward(
        self,
        x: torch.Tensor,
        params: torch.Tensor,
        out: torch.Tensor,
        features_out: torch.Tensor | None = None,
    ) -> None:
        """``out = block(x)`` and, when given, ``features_out`` = the last hidden layer."""

    @abstractmethod
    def step(
        self, x: torch.Tensor, y: torch.Tensor, params: torch.Tensor, grad: torch.Tensor
    ) -> torch.Tensor:
        """One full-batch step of ``0.5 * mean((block(x) - y)^2)``: writes dL/dparams into
        ``grad`` and returns the loss."""

    @abstractmethod
    def backward(
        self,
        x: torch.Tensor,
        params: torch.Tensor,
        grad_out: torch.Tensor,
        grad: torch.Tensor,
        grad_x: torch.Tensor | None = None,
    ) -> None:
        """dL/dparams into ``grad`` (and dL/dx into ``grad_x [n, D]``) from ``grad_out``,
        recomputing the forward."""

    @abstractmethod
    def _update(self, params: torch.Tensor, grad: torch.Tensor, state: OptimState) -> None:
        """The optimizer update of step ``state.step`` (already advanced) in place."""

    def update_scratch(self) -> int:
        """Rows of ``[numel]`` fp32 scratch this backend's update needs in an OptimState."""
        return 0

    def optimizer_state(self, kind: str, lr: float, numel: int, **hyper: float) -> OptimState:
        """Fresh optimizer state for a ``[numel]`` parameter vector on this engine's device."""
        return OptimState(kind, lr, numel, self.device, scratch=self.update_scratch(), **hyper)

    def update(self, params: torch.Tensor, grad: torch.Tensor, state: OptimState) -> None:
        """Advance ``state`` and apply its update to ``params`` in place (no host sync)."""
        state.advance()
        self._update(params, grad, state)

    def prepare(self, n: int) -> None:  # noqa: B027 (a hook: most backends plan nothing per n)
        """Plan launches for calls of ``n`` rows now rather than on first use (backends that
        plan per row count override this)."""

    def validate(
        self,
        x: torch.Tensor,
        params: torch.Tensor | None = None,
        *,
        targets: torch.Tensor | None = None,
        features_out: torch.Tensor | None = None,
        grad_x: torch.Tensor | None = None,
    ) -> None:
        """The shared checks of operands an engine will see, in calls of at most ``rows`` rows
        (chunks of ``x`` when it has more); plans those calls. Call once, not per epoch."""
        shape = self.shape
        check_tensor("x", x, rows=None, cols=shape.in_dim, dtypes=INPUT_DTYPES, device=self.device)
        n = x.shape[0]
        # Chunked calls over n rows: full chunks of min(rows, n) and one remainder.
        self.prepare(min(n, self.rows))
        if n > self.rows and n % self.rows:
            self.prepare(n % self.rows)
        if params is not None:
            check_params(params, shape, self.device)
        if targets is not None:
            check_tensor(
                "targets", targets, rows=n, cols=shape.out_dim, dtypes=(torch.float32,),
                device=self.device,
            )  # fmt: skip
        if features_out is not None:
            check_tensor(
                "features_out", features_out, rows=n, cols=shape.width, dtypes=INPUT_DTYPES,
                device=self.device,
            )  # fmt: skip
        if grad_x is not None:
            check_tensor(
                "grad_x", grad_x, rows=n, cols=shape.in_dim, dtypes=(torch.float32,),
                device=self.device,
            )  # fmt: skip

    def describe(self) -> dict:
        """What this grade was bound to, for metrics.json."""
        return {
            "backend": self.backend,
            "shape": shape_name(self.shape),
            "device": str(self.device),
            "input_dtype": str(self.input_dtype).removeprefix("torch."),
            "rows": self.rows,
            **self.options.to_dict(),
            "cuda_graph_capturable": self.capturable,
            "self_check": self.self_check,
            "auto_skipped": self.auto_skipped,
        }

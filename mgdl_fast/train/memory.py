"""The preflight memory model: a run's peak memory per rank, estimated before it starts.

A fit's memory is a handful of arrays whose sizes follow from the image, the model and the
settings. For ``N = H * W`` pixels, ``C`` channels, grade widths ``W_k`` and cached-feature
bytes ``b`` (4 fp32, 2 bf16), the regression splits are train (N/4), val (N/4) and test (N):
``1.5 N`` rows in all (TV restoration: the N pixels, once).

- ``baseline``: what the process holds already (interpreter, torch, the CLI), measured;
- ``image``: the image decoded into float64 ``[H, W, C]``, when the run loads it after the
  estimate (an image decoded already is in the baseline; a streamed one is read by bands);
- ``splits``: coordinates ``[rows, 2]`` fp32 (made per chunk when streaming) and targets
  ``[rows, C]`` fp32;
- ``objective``: the residual of every split ``[rows, C]`` (regression), or the image-space
  arrays of the TV step (accumulated image, proximal variable, the loss graph's arrays);
- ``encoding``: encoding grade 1's coordinates chunk by chunk: the angles ``[chunk, m]`` fp32
  and, when streaming, the reused ``[chunk, 2m]`` fp32 chunk buffer;
- ``features``: the cache at its largest, while a grade k is frozen: its new features of every
  split and its inputs of the test split, not yet released (``rows W_k b + N W_{k-1} b``; for
  grade 1 the inputs are its encoded coordinates ``[N, 2m]`` fp32, held in memory unless
  streaming), or grade 1's encoded inputs of every split while it trains, if more; features
  on disk count only as their staged chunks;
- ``engine``: the backend's buffers for a full-batch step on the train split (a chunk when
  streaming), as the backend declares them for the grade's plan (``Backend.memory``; under
  auto the largest of the backends auto may pick): nothing is bound, allocated or launched;
- ``freeze``: the frozen grade's outputs ``[rows, C]`` fp32 before the objective absorbs them;
- ``optimizer``: parameters, gradient, Adam moments and a chunk gradient, fp32;
- ``outputs``: what a grade's end writes: the reconstruction ``[H, W, C]`` fp32 and its 8-bit
  PNG (counted on top of the freeze, which it follows, for a bound that holds).

The estimate is checked against measured peak RSS (tests/train/test_memory.py). ``fits``
reports it; ``suggestions`` names the settings that would bring it under a limit.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import psutil
import torch

from ..backends import AUTO_ORDER, get_backend, reasons, requested_backend
from ..backends.base import Options
from ..block import BlockShape
from ..tasks.base import MemoryTerms

# What ``--max-memory`` leaves for the system and the page cache by default.
MARGIN_FRACTION = 0.1
MIN_MARGIN_BYTES = 1 << 30
# Bytes per chunk row and encoded input (2m of them) of encoding a chunk: the angles (m fp32),
# and the chunk buffer (2m fp32) when streaming.
ENCODE_ANGLE_BYTES, ENCODE_CHUNK_BYTES = 2, 4


@dataclass(frozen=True)
class Problem:
    """What the memory model needs to know about a run (per rank: ``ranks`` shards it)."""

    height: int
    width: int
    channels: int
    terms: MemoryTerms
    shapes: tuple[BlockShape, ...]
    cache_bytes: int
    precision: str
    backend: str | None
    device: torch.device
    stream: bool
    feature_store: str
    chunk_size: int
    load_image: bool
    ranks: int = 1

    @property
    def pixels(self) -> int:
        return self.height * self.width

    @property
    def split_rows(self) -> dict[str, int]:
        """Rows of each split on this rank."""
        rows = self.terms.splits(self.height, self.width)
        return {name: _share(n, self.ranks) for name, n in rows.items()}


def _share(n: int, ranks: int) -> int:
    return -(-n // ranks)


@dataclass
class Estimate:
    """Peak bytes per rank, by component (see the module docstring)."""

    parts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.parts.values())

    def describe(self) -> str:
        shown = sorted(self.parts.items(), key=lambda kv: -kv[1])
        return (
            f"{format_bytes(self.total)} ("
            + ", ".join(f"{name} {format_bytes(n)}" for name, n in shown if n >= 1 << 20)
            + ")"
        )


def format_bytes(n: float) -> str:
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


def parse_bytes(text: str) -> int:
    """``6G``, ``6GB``, ``512M``, ``2.5g`` or a plain byte count -> bytes (binary units)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    value = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = units.get(value[-1:], 1)
    number = value[:-1] if value[-1:] in units else value
    try:
        result = float(number) * scale
    except ValueError:
        raise ValueError(f"not a memory size: {text!r} (examples: 6G, 512M)") from None
    if result <= 0:
        raise ValueError(f"memory size must be positive, got {text!r}")
    return int(result)


def baseline_bytes() -> int:
    """This process's resident memory now."""
    return psutil.Process().memory_info().rss


def default_limit(device: torch.device) -> int:
    """What a run may use by default: the available memory minus a margin (host memory for
    a CPU run, the device's free memory for a CUDA run)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * (1 - MARGIN_FRACTION))
    available = psutil.virtual_memory().available
    return int(available - max(MIN_MARGIN_BYTES, available * MARGIN_FRACTION))


def engine_bytes(shape: BlockShape, rows: int, problem: Problem, input_dtype) -> int:
    """The bytes an engine of ``shape`` would allocate for ``rows`` rows, from what the
    backend declares (under auto: the most of any backend auto may pick for the device)."""
    options = Options(problem.precision)
    name = requested_backend(problem.backend)
    names = AUTO_ORDER if name == "auto" else (name,)
    sizes = []
    for candidate in names:
        if reasons(candidate, shape, problem.device, input_dtype, options):
            continue
        backend = get_backend(candidate)
        assert backend is not None
        if name == "auto" and problem.device.type not in backend.capabilities.auto_device_types:
            continue
        sizes.append(backend.memory(shape, problem.device, input_dtype, options).bytes(rows))
    return max(sizes, default=0)


def estimate(problem: Problem, baseline: int) -> Estimate:
    """Peak bytes of ``problem`` per rank on top of ``baseline`` (see the module docstring)."""
    rows = problem.split_rows
    total_rows, test_rows = sum(rows.values()), rows.get("test", rows["train"])
    c, b, f32 = problem.channels, problem.cache_bytes, 4
    parts = {"baseline": baseline}
    parts["image"] = problem.pixels * c * 8 if problem.load_image else 0
    coords = 0 if problem.stream else total_rows * 2 * f32
    parts["splits"] = coords + total_rows * c * f32
    terms = problem.terms
    parts["objective"] = (
        (terms.objective_per_row * total_rows + terms.objective_per_pixel * problem.pixels)
        * c
        * f32
    )
    first = problem.shapes[0]
    encoded = first.in_dim != 2
    on_disk = problem.feature_store == "disk" or (
        problem.feature_store == "host" and problem.device.type == "cuda"
    )
    chunk = min(problem.chunk_size, rows["train"])
    per_input = ENCODE_ANGLE_BYTES + (ENCODE_CHUNK_BYTES if problem.stream else 0)
    parts["encoding"] = chunk * first.in_dim * per_input if encoded else 0

    def inputs_held(k: int, n: int) -> int:
        """Bytes of grade k's inputs for n rows held in memory."""
        if k == 0:
            return n * first.in_dim * f32 if encoded and not problem.stream else 0
        return 0 if on_disk else n * problem.shapes[k - 1].width * b

    largest_features, largest_engine = 0, 0
    for k, shape in enumerate(problem.shapes):
        if on_disk:
            # The freeze's fp32 scratch chunk and its copy in the store's dtype, and the
            # staged read chunks (one on a CPU; two pinned and two on the device on CUDA).
            staged = 4 if problem.device.type == "cuda" else 1
            new = chunk * shape.width * (4 + (1 + staged) * b)
        else:
            new = total_rows * shape.width * b
        held = max(inputs_held(k, total_rows), new + inputs_held(k, test_rows))
        largest_features = max(largest_features, held)
        engine_rows = chunk if problem.stream else max(chunk, rows["train"])
        input_dtype = torch.float32 if k == 0 else _cache_dtype(b)
        largest_engine = max(largest_engine, engine_bytes(shape, engine_rows, problem, input_dtype))
    parts["features"] = largest_features
    parts["engine"] = largest_engine
    parts["freeze"] = total_rows * c * f32
    parts["optimizer"] = max(s.num_params for s in problem.shapes) * f32 * 5
    parts["outputs"] = problem.pixels * c * (f32 + 1)
    return Estimate(parts)


def _cache_dtype(nbytes: int) -> torch.dtype:
    return torch.bfloat16 if nbytes == 2 else torch.float32


def suggestions(problem: Problem, baseline: int, limit: int) -> list[str]:
    """Settings that would bring ``problem`` under ``limit``, each as the option to give."""
    found = []
    candidates = [
        ("--cache-dtype bf16", replace(problem, cache_bytes=2)),
        ("--stream on", replace(problem, stream=True)),
        ("--stream on --feature-store disk", replace(problem, stream=True, feature_store="disk")),
    ]
    for option, candidate in candidates:
        if candidate != problem and estimate(candidate, baseline).total <= limit:
            found.append(option)
    for ranks in (2, 4, 8):
        if ranks > problem.ranks:
            candidate = replace(problem, ranks=ranks)
            if estimate(candidate, baseline).total <= limit:
                found.append(f"torchrun --nproc-per-node {ranks}")
                break
    crop = _largest_crop(problem, baseline, limit)
    if crop:
        found.append(f"--crop {crop} {crop}")
    return found


def _largest_crop(problem: Problem, baseline: int, limit: int) -> int | None:
    """The largest square crop (a multiple of 64) that fits, if one does."""
    side = min(problem.height, problem.width) // 64 * 64
    while side >= 64:
        candidate = replace(problem, height=side, width=side)
        if estimate(candidate, baseline).total <= limit:
            return side
        side -= 64 if side <= 1024 else side // 8 // 64 * 64
    return None


__all__ = [
    "Estimate",
    "Problem",
    "baseline_bytes",
    "default_limit",
    "estimate",
    "format_bytes",
    "parse_bytes",
    "suggestions",
]

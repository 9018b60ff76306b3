"""Data-parallel grades over torch.distributed: which rows a rank holds and the collectives a
sharded grade needs (docs/DISTRIBUTED.md has the design).

A ``World`` is this process's place among a run's ranks. ``SINGLE`` (one process) shards
nothing and every collective of it returns at once, so a single process runs exactly the code
it ran before. Rank r of K holds the contiguous rows ``[N r // K, N (r + 1) // K)`` of every
split (``World.rows``). What crosses ranks:

- ``PackedSum``: a grade's dW ``[P]`` and its loss in one ``[P + 1]`` fp32 buffer, summed by one
  all_reduce per epoch, so that every rank takes the same optimizer step;
- ``all_reduce_``: sums (records' squared errors) or maxima (a frozen grade's activations);
- ``RowGather``: every rank's rows of an ``[N, C]`` array gathered on every rank (TV's image
  prediction, the reconstruction);
- ``agree``: the elementwise maximum of a few integers (stop, save, a caught signal), so that a
  decision one rank takes, every rank takes;
- ``broadcast`` and ``on_main``: rank 0's Python object for every rank (the resumed state), and
  work only rank 0 does (writing the run) whose failure every rank raises.

``launch`` joins the job torchrun describes in the environment: NCCL for CUDA tensors (with
gloo for the CPU tensors of agreements and objects) on ``cuda:LOCAL_RANK``, gloo on a CPU.
Every collective times out after ``MGDL_FAST_DIST_TIMEOUT_S`` seconds (default 900), so a rank
that dies or stops answering ends the others' waits instead of hanging them.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

from .errors import InputError, MGDLError

TIMEOUT_ENV = "MGDL_FAST_DIST_TIMEOUT_S"
DEFAULT_TIMEOUT_S = 900.0
T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """Rank ``rank`` of ``size`` (``local_rank`` on its node); collectives use the default
    process group, agreements and objects on ``control_device`` (CPU where gloo serves)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    control_device: str = "cpu"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def sharded(self) -> bool:
        return self.size > 1

    def rows(self, total: int, rank: int | None = None) -> tuple[int, int]:
        """``(start, stop)``: the rows of ``total`` that ``rank`` (default: this one) holds."""
        r = self.rank if rank is None else rank
        return total * r // self.size, total * (r + 1) // self.size

    def check_rows(self, name: str, total: int) -> tuple[int, int]:
        """This rank's rows of split ``name``; InputError when a rank would hold none."""
        if total < self.size:
            raise InputError(f"split {name} has {total} rows, fewer than the {self.size} ranks")
        return self.rows(total)

    def all_reduce_(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """``tensor`` summed (or ``op="max"``) over ranks, in place; returns it."""
        if self.sharded:
            dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
        return tensor

    def agree(self, values: Sequence[int]) -> list[int]:
        """The elementwise maximum over ranks of a few integers (flags, a signal number)."""
        if not self.sharded:
            return [int(v) for v in values]
        t = torch.tensor([int(v) for v in values], dtype=torch.int64, device=self.control_device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return [int(v) for v in t.tolist()]

    def any(self, flag: bool) -> bool:
        """Whether ``flag`` holds on any rank."""
        return bool(self.agree([int(flag)])[0])

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` (picklable) on every rank."""
        if not self.sharded:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=torch.device(self.control_device))
        return box[0]  # type: ignore[return-value]

    def on_main(self, fn: Callable[[], T]) -> T | None:
        """``fn()`` on rank 0 alone (None elsewhere). When it raises, every rank raises: rank 0
        its own error, the others an error with its message (an InputError stays one)."""
        if not self.sharded:
            return fn()
        result, error = None, None
        if self.is_main:
            try:
                result = fn()
            except Exception as exc:
                error = exc
        failure = None if error is None else (isinstance(error, InputError), str(error))
        failure = self.broadcast(failure)
        if error is not None:
            raise error
        if failure is not None:
            user_error, message = failure
            raise InputError(message) if user_error else MGDLError(f"rank 0 failed: {message}")
        return result

    def everywhere(self, fn: Callable[[], T]) -> T:
        """``fn()`` (no collectives inside) on every rank; when it raises on any rank, every
        rank raises: that rank its own error, the others one saying so."""
        if not self.sharded:
            return fn()
        result, error = None, None
        try:
            result = fn()
        except Exception as exc:
            error = exc
        if self.any(error is not None):
            if error is not None:
                raise error
            raise MGDLError("another rank failed before training; see its error")
        return result  # type: ignore[return-value]

    def describe(self) -> dict:
        """What metrics.json records about the ranks."""
        backend = dist.get_backend() if self.sharded else None
        return {"world_size": self.size, "backend": backend}


SINGLE = World()


def current() -> World:
    """This process's ``World`` in the default process group (``SINGLE`` when torch.distributed
    is not initialised or has one rank)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return SINGLE
    backend = str(dist.get_backend())
    control = "cpu" if "gloo" in backend else f"cuda:{torch.cuda.current_device()}"
    local = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return World(dist.get_rank(), dist.get_world_size(), local, control)


def timeout_s() -> float:
    """Seconds any collective may wait (``MGDL_FAST_DIST_TIMEOUT_S``, default 900)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        raise InputError(f"{TIMEOUT_ENV} must be a number of seconds, got {text!r}") from None
    if not value > 0:
        raise InputError(f"{TIMEOUT_ENV} must be > 0, got {text!r}")
    return value


def launch(cuda: bool) -> World:
    """Join the job torchrun describes (``WORLD_SIZE`` > 1 in the environment), once; ``cuda``:
    the run trains on CUDA (NCCL, device ``cuda:LOCAL_RANK``), else gloo on the CPU. Without
    such a job (or with one rank) returns ``SINGLE`` and initialises nothing."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return SINGLE
    if dist.is_available() and dist.is_initialized():
        return current()
    if not dist.is_available():
        raise InputError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        if local >= torch.cuda.device_count():
            raise InputError(
                f"LOCAL_RANK {local} needs cuda:{local}, but {torch.cuda.device_count()} CUDA "
                "devices exist; start at most that many ranks per node"
            )
        torch.cuda.set_device(local)
    timeout = datetime.timedelta(seconds=timeout_s())
    try:
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", timeout=timeout)
    except ValueError as exc:
        raise InputError(f"cannot join the torchrun job: {exc}") from None
    return current()


def finish(world: World) -> None:
    """Leave the job ``launch`` joined (nothing for ``SINGLE``)."""
    if world.sharded and dist.is_initialized():
        dist.destroy_process_group()


def rank_device(name: str, world: World) -> str:
    """The device a rank trains on: CUDA devices become ``cuda:LOCAL_RANK`` in a sharded run
    (one GPU per rank); anything else is kept."""
    if world.sharded and name.startswith("cuda"):
        return f"cuda:{world.local_rank}"
    if world.sharded and name == "auto" and torch.cuda.is_available():
        return f"cuda:{world.local_rank}"
    return name


class PackedSum:
    """A grade's gradient ``grad [P]`` and loss ``loss []`` as views of one fp32 buffer
    ``[P + 1]``: a step writes this rank's share into both and ``reduce`` sums the buffer over
    ranks with one all_reduce."""

    def __init__(self, world: World, numel: int, device: torch.device):
        self.world = world
        self.buffer = torch.zeros(numel + 1, device=device)
        self.grad, self.loss = self.buffer[:numel], self.buffer[numel]

    def reduce(self) -> None:
        self.world.all_reduce_(self.buffer)


class RowGather:
    """Every rank's rows ``[n_r, C]`` of a ``[total, C]`` array, gathered on every rank into
    ``full``; buffers made once (padded to the largest shard, as all_gather needs one size)."""

    def __init__(self, world: World, total: int, cols: int, device, dtype=torch.float32):
        self.world = world
        self.ranges = [world.rows(total, r) for r in range(world.size)]
        most = max(stop - start for start, stop in self.ranges)
        self._send = torch.zeros(most, cols, dtype=dtype, device=device)
        self._parts = [torch.empty_like(self._send) for _ in range(world.size)]
        self.full = torch.empty(total, cols, dtype=dtype, device=device)

    def __call__(self, local: torch.Tensor) -> torch.Tensor:
        """``full [total, C]`` from this rank's ``local [n_r, C]`` (a view reused by the next
        call)."""
        self._send[: local.shape[0]].copy_(local)
        dist.all_gather(self._parts, self._send)
        for (start, stop), part in zip(self.ranges, self._parts):
            self.full[start:stop].copy_(part[: stop - start])
        return self.full


def gather_rows(world: World, local: torch.Tensor, total: int) -> torch.Tensor:
    """A new ``[total, C]`` tensor of every rank's rows (``local`` itself for ``SINGLE``)."""
    if not world.sharded:
        return local
    return RowGather(world, total, local.shape[1], local.device, local.dtype)(local).clone()

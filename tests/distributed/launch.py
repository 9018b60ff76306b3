"""Start K gloo ranks on this machine as torchrun would (its environment variables, a free
localhost port), each running a function of this package, and wait for them with a limit."""

from __future__ import annotations

import multiprocessing
import os
import socket
import time
from collections.abc import Callable

# A rank that waits this long for another has hung: the tests fail instead of blocking CI.
RANK_LIMIT_S = 240.0
# Collectives give up well before the tests' limit, so a hang shows up as an error.
COLLECTIVE_TIMEOUT_S = "60"


def free_port() -> int:
    """A localhost TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_environment(rank: int, size: int, port: int) -> dict[str, str]:
    """What torchrun sets for a rank on one node, one thread per rank."""
    return {
        "RANK": str(rank),
        "LOCAL_RANK": str(rank),
        "WORLD_SIZE": str(size),
        "LOCAL_WORLD_SIZE": str(size),
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "OMP_NUM_THREADS": "1",
        "MGDL_FAST_PRECISION": "fp32",
        "MGDL_FAST_DIST_TIMEOUT_S": COLLECTIVE_TIMEOUT_S,
    }


def _entry(fn: Callable, rank: int, size: int, port: int, args: tuple) -> None:
    os.environ.update(rank_environment(rank, size, port))
    import torch

    torch.set_num_threads(1)
    torch.manual_seed(0)
    fn(rank, *args)


def run_ranks(fn: Callable, size: int, *args, limit_s: float = RANK_LIMIT_S) -> list[int]:
    """Run ``fn(rank, *args)`` in ``size`` fresh processes (spawned, so nothing of this one is
    inherited but the environment); returns their exit codes. Raises AssertionError when one
    is still running after ``limit_s`` (after killing them all)."""
    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=_entry, args=(fn, r, size, port, args)) for r in range(size)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + limit_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    hung = [r for r, p in enumerate(procs) if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    assert not hung, f"ranks {hung} still running after {limit_s:.0f} s"
    return [p.exitcode for p in procs]

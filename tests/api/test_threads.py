"""The ops from several threads at once give, bit for bit, the results of serial calls: at the
same N (one engine family, several engines lent at once) and at different N (one engine
serving several row counts up to its capacity)."""

from __future__ import annotations

import threading

import pytest
import torch

import mgdl_fast as mf
from mgdl_fast import ops

SHAPE = mf.BlockShape(2, 32, 2, 1)
CALLS = 10


@pytest.fixture(autouse=True)
def _one_intra_op_thread():
    """One intra-op thread per call: the threads here are the concurrency (and several
    threads each with a pool of their own oversubscribe a small CI machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _work(seed: int, n: int) -> list[torch.Tensor]:
    """One thread's calls: forward, autograd backward (input and parameter gradients), a fused
    step and an Adam update, ``CALLS`` times; every result kept."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=gen).requires_grad_()
    y = torch.rand(n, 1, generator=gen)
    flat = mf.BlockParams.init(SHAPE, seed=seed).flat.requires_grad_()
    m, v = torch.zeros_like(flat), torch.zeros_like(flat)
    step = torch.zeros((), dtype=torch.float64)
    results = []
    for _ in range(CALLS):
        params = mf.BlockParams(SHAPE, flat)
        out = mf.block_forward(x, params, backend="torch")
        gx, gf = torch.autograd.grad(out.square().sum(), (x, flat))
        loss, grad = mf.grade_step(x.detach(), y, mf.BlockParams(SHAPE, flat.detach()),
                                   backend="torch")  # fmt: skip
        with torch.no_grad():
            mf.adam_step(params, grad, m, v, step, lr=1e-2, backend="torch")
        results += [out.detach(), gx, gf, loss, grad, flat.detach().clone()]
    return results


def _concurrent(jobs: list[tuple[int, int]]) -> list[list[torch.Tensor]]:
    """``_work`` of every (seed, n) in its own thread, all started together."""
    results: list[list[torch.Tensor] | None] = [None] * len(jobs)
    errors: list[BaseException] = []
    barrier = threading.Barrier(len(jobs))

    def run(i: int, seed: int, n: int) -> None:
        try:
            barrier.wait()
            results[i] = _work(seed, n)
        except BaseException as exc:  # reported in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i, *job)) for i, job in enumerate(jobs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return [r for r in results if r is not None]


@pytest.mark.parametrize(
    "jobs",
    [
        [(seed, 2000) for seed in range(4)],
        [(0, 2000), (1, 1731), (2, 1900), (3, 2000)],
    ],
    ids=["same_n", "different_n"],
)
def test_threads_match_serial_calls(jobs):
    ops.clear_engines()
    serial = [_work(seed, n) for seed, n in jobs]
    # Idle engines are kept: a family served serially must also serve threads correctly.
    concurrent = _concurrent(jobs)
    assert len(concurrent) == len(jobs)
    for got, want in zip(concurrent, serial):
        for a, b in zip(got, want, strict=True):
            assert torch.equal(a, b)


def test_engines_serve_any_n_up_to_their_capacity():
    ops.clear_engines()
    params = mf.BlockParams.init(SHAPE, seed=0)
    x = torch.rand(1000, 2)
    full = mf.block_forward(x, params, backend="torch")
    (engine,) = ops.cached_engines()
    assert engine.rows == ops.engines.capacity(1000) >= 1000
    binds = mf.backends.engine.counters.binds
    for n in (999, 640, 17, 1):
        torch.testing.assert_close(mf.block_forward(x[:n], params, backend="torch"), full[:n])
    assert mf.backends.engine.counters.binds == binds
    assert ops.cached_engines() == [engine]


def test_capacity_rounds_up_by_at_most_an_eighth():
    for n in (*range(1, 300), 1000, 4097, 65535, 10**6):
        cap = ops.engines.capacity(n)
        assert n <= cap <= n + max(1, n // 8)

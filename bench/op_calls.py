"""Per-call time of the ops (``mgdl_fast.block_forward`` and its backward) in one thread, at
a fixed N and at a minibatch size that changes every call, and of the same calls from two
threads; with ``--base COMMIT``, the same in fresh processes alternated with that commit's
package (what the thread-safe engine pool costs against the engines shared between threads).

    python bench/op_calls.py --base c4d9925 --repeats 5 --out bench/results/cpu_op_calls.json

The base run skips the threaded case (its engines are shared between threads: wrong numbers).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
SHAPE = (2, 64, 2, 1)  # D, W, L, C: a small grade, where per-call overhead shows
SIZES = (64, 1024, 16384)
CALLS = 200
# The torch backend in fp32: the numbers are the ops' overhead, not a precision choice.
CONFIG = {"backend": "torch", "precision": "fp32"}


def _setup(n: int):
    import mgdl_fast as mf

    shape = mf.BlockShape(*SHAPE)
    flat = mf.BlockParams.init(shape, seed=0).flat.requires_grad_()
    return mf, shape, flat, torch.rand(n, 2)


def _train_call(mf, shape, flat, x) -> None:
    mf.block_forward(x, mf.BlockParams(shape, flat), **CONFIG).sum().backward()


def per_call(n: int, calls: int = CALLS) -> dict[str, float]:
    """Microseconds per forward and per forward + backward at ``n`` rows."""
    mf, shape, flat, x = _setup(n)
    params = mf.BlockParams(shape, flat.detach())
    result = {}
    for name, fn in (
        ("forward", lambda: mf.block_forward(x, params, **CONFIG)),
        ("train", lambda: _train_call(mf, shape, flat, x)),
    ):
        fn()
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        result[name] = 1e6 * (time.perf_counter() - start) / calls
    return result


def varying(calls: int = CALLS) -> float:
    """Microseconds per forward + backward when each call has a new N (1000 down to 801)."""
    mf, shape, flat, x = _setup(1000)
    _train_call(mf, shape, flat, x)
    start = time.perf_counter()
    for k in range(calls):
        _train_call(mf, shape, flat, x[: 1000 - k % 200])
    return 1e6 * (time.perf_counter() - start) / calls


def threaded(n: int, threads: int = 2, calls: int = CALLS) -> float:
    """Microseconds per forward + backward, ``threads`` threads each making ``calls`` calls."""
    mf, shape, flat, x = _setup(n)
    _train_call(mf, shape, flat, x)

    def work():
        f = flat.detach().clone().requires_grad_()
        for _ in range(calls):
            _train_call(mf, shape, f, x)

    pool = [threading.Thread(target=work) for _ in range(threads)]
    start = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return 1e6 * (time.perf_counter() - start) / (threads * calls)


def lookup(calls: int = 2000) -> float:
    """Microseconds to get the engine of a call whose engine is kept: the pool's lease (a
    context manager) here, the shared cache's lookup (a function) at the base commit."""
    from mgdl_fast.ops import engines

    mf, shape, flat, x = _setup(1024)
    mf.block_forward(x, mf.BlockParams(shape, flat.detach()), **CONFIG)
    start = time.perf_counter()
    for _ in range(calls):
        engine = engines.engine_for("block_fwd", shape, x, **CONFIG)
        if hasattr(engine, "__enter__"):
            with engine:
                pass
    return 1e6 * (time.perf_counter() - start) / calls


def measure(with_threads: bool) -> dict:
    torch.set_num_threads(1)
    result: dict = {"engine_lookup": lookup()}
    result |= {f"n{n}": per_call(n) for n in SIZES}
    result["varying_n_train"] = varying()
    if with_threads:
        result["threads2_n1024_train"] = threaded(1024)
    return result


def _run(tree: Path, with_threads: bool) -> dict:
    # The editable install's import hook would load this worktree's package whatever sys.path
    # says: drop it, so ``tree`` (this worktree, or the base commit's copy) is what is timed.
    code = (
        "import sys, json; sys.meta_path[:] = [f for f in sys.meta_path if not "
        "type(f).__module__.startswith('_editable')];"
        f"sys.path[:0] = [{str(tree)!r}, {str(ROOT)!r}];"
        "import mgdl_fast; print(mgdl_fast.__file__);"
        f"from bench.op_calls import measure; print(json.dumps(measure({with_threads})))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    lines = out.stdout.strip().splitlines()
    assert lines[0].startswith(str(tree)), f"timed {lines[0]}, not {tree}"
    return json.loads(lines[-1])


def _commit(ref: str) -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short", ref], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.strip()


def _reduce(runs: list[dict], reduce) -> dict:
    """``reduce`` of every number over the runs, keeping the nesting."""
    return {
        k: _reduce([r[k] for r in runs], reduce)
        if isinstance(v, dict)
        else reduce([r[k] for r in runs])
        for k, v in runs[0].items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", help="commit to compare with (its mgdl_fast, fresh processes)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", help="JSON file for the medians and every run")
    args = parser.parse_args()
    runs: dict[str, list[dict]] = {"head": [], "base": []}
    with tempfile.TemporaryDirectory() as tmp:
        if args.base:
            archive = subprocess.run(["git", "archive", args.base, "mgdl_fast"], cwd=ROOT,
                                     check=True, capture_output=True).stdout  # fmt: skip
            subprocess.run(["tar", "-x", "-C", tmp], input=archive, check=True)
        for _ in range(args.repeats):
            runs["head"].append(_run(ROOT, True))
            if args.base:
                runs["base"].append(_run(Path(tmp), False))
    result = {
        "machine": "this project's 2-core AMD EPYC CPU, torch.set_num_threads(1)",
        "torch": torch.__version__,
        "shape": list(SHAPE),
        "head": _commit("HEAD"),
        "base": _commit(args.base) if args.base else None,
        "median_us": {k: _reduce(v, statistics.median) for k, v in runs.items() if v},
        # The machine is shared: the fastest run is the least disturbed one.
        "min_us": {k: _reduce(v, min) for k, v in runs.items() if v},
        "runs": {k: v for k, v in runs.items() if v},
    }
    print(json.dumps({"median_us": result["median_us"], "min_us": result["min_us"]}, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()

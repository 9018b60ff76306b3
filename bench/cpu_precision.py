"""The torch backend's bf16 CPU path against its fp32 path: one grade-2 training epoch (step +
Adam) at the 512^2 train split (N = 65,536 rows, block [128, 128 x 2, 1]), fp32 reading fp32
cached features and bf16 reading bf16 ones (what the trainer caches for each), on one and on
two threads, the two precisions alternated epoch by epoch in one process. Prints medians and
their ratio per thread count and writes the raw times as JSON.

    python bench/cpu_precision.py --out bench/results/cpu_precision.json
    python bench/cpu_precision.py --rows 4096 --epochs 3   # a quick look
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from mgdl_fast import BlockParams, BlockShape, Options, backends
from mgdl_fast.backends.torch.bf16 import cpu_bf16_reason
from mgdl_fast.io.environment import environment


def epoch_runner(precision: str, shape: BlockShape, rows: int):
    """A zero-argument epoch (step + update) of a bound torch engine in ``precision``."""
    gen = torch.Generator().manual_seed(0)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    x = torch.relu(torch.randn(rows, shape.in_dim, generator=gen)).to(dtype)
    y = torch.rand(rows, shape.out_dim, generator=gen)
    params = BlockParams.init(shape, seed=0)
    engine = backends.bind(shape, device="cpu", rows=rows, input_dtype=dtype,
                           options=Options(precision), backend="torch")  # fmt: skip
    grad = torch.empty_like(params.flat)
    state = engine.optimizer_state("adam", 1e-3, params.flat.numel())

    def epoch() -> None:
        engine.step(x, y, params.flat, grad)
        engine.update(params.flat, grad, state)

    return epoch


def measure(threads: int, shape: BlockShape, rows: int, epochs: int) -> dict:
    torch.set_num_threads(threads)
    runners = {p: epoch_runner(p, shape, rows) for p in ("fp32", "bf16")}
    for run in runners.values():
        run()
    times: dict[str, list[float]] = {p: [] for p in runners}
    for _ in range(epochs):
        for precision, run in runners.items():
            start = time.perf_counter()
            run()
            times[precision].append(time.perf_counter() - start)
    medians = {p: statistics.median(v) for p, v in times.items()}
    return {
        "threads": threads,
        "times_s": times,
        "median_s": medians,
        "ratio_fp32_over_bf16": medians["fp32"] / medians["bf16"],
    }


def gemm_gflops(threads: int, rows: int, repeats: int = 20) -> dict[str, float]:
    """The ceiling of the ratio: one ``[rows, 128] @ [128, 128]`` GEMM in each precision,
    median GFLOP/s (an epoch is five such GEMMs plus elementwise passes)."""
    torch.set_num_threads(threads)
    rates = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(rows, 128).to(dtype), torch.randn(128, 128).to(dtype)
        out = torch.empty(rows, 128, dtype=dtype)
        times = []
        for _ in range(repeats + 3):
            start = time.perf_counter()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter() - start)
        rates[name] = 2 * rows * 128 * 128 / statistics.median(times[3:]) / 1e9
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=65_536, help="training rows (512^2 / 4)")
    parser.add_argument("--epochs", type=int, default=30, help="timed epochs per precision")
    parser.add_argument("--threads", default="1,2", help="comma list of thread counts")
    parser.add_argument("--out", default="bench/results/cpu_precision.json")
    args = parser.parse_args()
    if (reason := cpu_bf16_reason()) is not None:
        sys.exit(f"no bf16 path to measure here: {reason}")
    shape = BlockShape(128, 128, 2, 1)
    results = []
    for threads in (int(t) for t in args.threads.split(",")):
        result = measure(threads, shape, args.rows, args.epochs)
        result["gemm_gflops"] = gemm = gemm_gflops(threads, args.rows)
        m = result["median_s"]
        print(f"{threads} thread(s): fp32 {m['fp32'] * 1e3:.1f} ms, bf16 {m['bf16'] * 1e3:.1f} ms"
              f" per epoch -> {result['ratio_fp32_over_bf16']:.2f}x; GEMM fp32 "
              f"{gemm['fp32']:.0f}, bf16 {gemm['bf16']:.0f} GFLOP/s -> "
              f"{gemm['bf16'] / gemm['fp32']:.2f}x")  # fmt: skip
        results.append(result)
    record = {
        "block": shape.to_dict(),
        "rows": args.rows,
        "epochs": args.epochs,
        "results": results,
        "environment": environment("cpu"),
        "command": " ".join(["python", *sys.argv]),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(record, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

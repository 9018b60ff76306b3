"""Compile the Triton kernels of the GPU session's headline shapes into Triton's cache, in
parallel worker processes, while bench/gpu_suite.sh builds ``_C`` on the other cores: the smoke,
benchmark and test stages then start warm. Each configuration runs every op once at two row
counts, one per integer specialisation Triton compiles (a multiple of 16, as a large image's,
and not), and appends a record with its seconds (bench/records.py).

    python bench/prewarm_triton.py --jobs 8          # on a GPU
    python bench/prewarm_triton.py --jobs 2 --tiny   # CPU dry run (interpreter: nothing cached)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import gpu_smoke  # noqa: E402
from bench.kernel_report_triton import HEADLINE as REPORT_HEADLINE  # noqa: E402
from bench.records import append  # noqa: E402
from mgdl_fast import BlockParams, BlockShape, Options, backends  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
ROWS = (65_553, 65_536)
TINY_ROWS = (55, 64)


def configs(tiny: bool) -> list[tuple[tuple[int, ...], torch.dtype, str]]:
    """(D, W, L, C), input dtype, precision: the smoke's and benchmark's grades at the backend's
    default precision, then the kernel report's variants (the GPU tests') at theirs."""
    from mgdl_fast.backends.triton import TritonBackend

    default = TritonBackend().default_precision
    if tiny:
        return [(dims, dtype, default(dtype)) for dims, dtype in gpu_smoke.TINY]
    found = [(dims, dtype, default(dtype)) for dims, dtype in gpu_smoke.HEADLINE]
    found += [
        ((d, w, layers, c), DTYPES[x], p) for d, w, layers, c, x, p in REPORT_HEADLINE.values()
    ]
    return list(dict.fromkeys(found))


def warm(dims, dtype: torch.dtype, precision: str, rows: tuple[int, ...], device) -> None:
    """Every op of a Triton engine for this grade at each row count."""
    shape = BlockShape(*dims)
    engine = backends.bind(shape, device=device, rows=max(rows), input_dtype=dtype,
                           options=Options(precision), backend="triton")  # fmt: skip
    flat = BlockParams.init(shape, seed=0, device=device).flat
    state = engine.optimizer_state("adam", 1e-3, flat.numel())
    for n in rows:
        x = torch.rand(n, shape.in_dim, device=device).to(dtype)
        y = torch.rand(n, shape.out_dim, device=device)
        out, grad = torch.empty(n, shape.out_dim, device=device), torch.empty_like(flat)
        engine.forward(x, flat, out)
        engine.forward(x, flat, out, torch.empty(n, shape.width, device=device, dtype=dtype))
        engine.step(x, y, flat, grad)
        engine.backward(x, flat, y / n, grad)
        engine.update(flat, grad, state)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def worker(index: int, jobs: int, tiny: bool) -> int:
    device = torch.device("cpu" if tiny else "cuda")
    failed = 0
    for dims, dtype, precision in configs(tiny)[index::jobs]:
        start = time.perf_counter()
        record = {"op": "prewarm", "shape": list(dims), "dtype": str(dtype), "precision": precision}
        try:
            warm(dims, dtype, precision, TINY_ROWS if tiny else ROWS, device)
            record["status"] = "ok"
        except Exception as exc:  # a kernel that fails here is the smoke's to report
            record.update(status="ERROR", error=traceback.format_exception_only(exc)[-1].strip())
            failed += 1
        append({**record, "seconds": round(time.perf_counter() - start, 2)})
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=4, help="worker processes")
    parser.add_argument("--tiny", action="store_true", help="CPU dry run at small sizes")
    parser.add_argument("--worker", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        return worker(args.worker, args.jobs, args.tiny)
    jobs = max(1, min(args.jobs, len(configs(args.tiny))))
    cmd = [sys.executable, __file__, "--jobs", str(jobs), *(["--tiny"] if args.tiny else [])]
    procs = [subprocess.Popen([*cmd, "--worker", str(i)]) for i in range(jobs)]
    return max(p.wait() for p in procs)


if __name__ == "__main__":
    sys.exit(main())

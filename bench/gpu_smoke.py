"""Correctness smoke of every backend at the headline shapes, against the fp32 torch backend on
the same device: forward (output and features), one training step (loss and gradient), the
backward from a given dL/dout, and Adam, with outputs NaN-poisoned; plus NaN propagation (one
NaN weight must give a NaN loss). The kernel backends run with their default precision, the
torch backend with its own (bf16 on a GPU: the fallback auto picks when the kernels cannot
serve). One record per (backend, shape, op), appended the moment it exists (bench/records.py).

    python bench/gpu_smoke.py [--records FILE]            # on a GPU: headline shapes, N = 65553
    python bench/gpu_smoke.py [--records FILE] --tiny     # CPU dry run: small shapes, N = 300

The error of each comparison is max |backend - torch fp32| / max |torch fp32|. Its tolerance is
the self-check's (``testing.SELF_CHECK_TOLERANCE``, by product precision), or for bf16 twice
what rounding the operands to bf16 alone costs the fp32 torch backend, if more: a backward from
a random-sign dL/dout sums terms that cancel, so bf16 operands cannot give it 5e-2 even when
every product is exact.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import torch

# Run as a script, from a checkout or a bare copy of one: the tree's own packages first.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.records import append  # noqa: E402
from mgdl_fast import BlockShape, Options, backends  # noqa: E402
from mgdl_fast.backends.selfcheck_compare import inputs, relative_error  # noqa: E402
from mgdl_fast.io.environment import environment  # noqa: E402
from mgdl_fast.testing import SELF_CHECK_TOLERANCE, poisoned  # noqa: E402

# The issues' headline grades: (D, W, L, C), input dtype.
HEADLINE = [
    ((2, 128, 2, 1), torch.float32),
    ((128, 128, 2, 1), torch.bfloat16),
    ((2, 128, 3, 1), torch.float32),
    ((128, 128, 3, 1), torch.bfloat16),
    ((256, 256, 3, 3), torch.bfloat16),
]
TINY = [((2, 16, 2, 1), torch.float32), ((16, 16, 3, 3), torch.float32)]


def _inputs(shape: BlockShape, n: int, dtype: torch.dtype, device: torch.device):
    """The self-check's inputs (other seeds) and a random-sign dL/dout ``[n, C]``."""
    x, y, flat = inputs(shape, n, device, dtype, seed=0, param_seed=1)
    g_out = torch.randn(n, shape.out_dim, generator=torch.Generator().manual_seed(2)) / n
    return x, y, g_out.to(device), flat


def _ops(engine, x, y, g_out, flat):
    """Every op's results on one engine (outputs poisoned first)."""
    n, shape, device = x.shape[0], engine.shape, x.device
    out, feats = poisoned(n, shape.out_dim, device=device), poisoned(n, shape.width, device=device)
    engine.forward(x, flat, out, feats)
    grad = poisoned(flat.numel(), device=device)
    loss = engine.step(x, y, flat, grad).clone()
    bgrad = poisoned(flat.numel(), device=device)
    engine.backward(x, flat, g_out, bgrad)
    # Adam gets the same gradient on every engine and is judged by its update (a lost update
    # would hide in the parameters' size).
    g_adam = torch.randn(flat.shape, generator=torch.Generator().manual_seed(3)).to(device)
    params = flat.clone()
    state = engine.optimizer_state("adam", 1e-3, flat.numel())
    for _ in range(3):
        engine.update(params, g_adam, state)
    nan_flat = flat.clone()
    nan_flat[shape.in_dim * shape.width // 2] = float("nan")
    nan_loss = engine.step(x, y, nan_flat, torch.empty_like(flat)).clone()
    return {"forward": out, "features": feats, "loss": loss, "gradient": grad,
            "backward": bgrad, "adam": params - flat, "nan_loss": nan_loss}  # fmt: skip


def check(name: str, dims, dtype, n: int, device: torch.device) -> list[dict]:
    shape = BlockShape(*dims)
    base = {
        "backend": name,
        "shape": list(dims),
        "dtype": str(dtype).removeprefix("torch."),
        "n": n,
    }
    why = backends.reasons(name, shape, device, dtype, Options.from_env())
    if why:
        return [{**base, "op": "all", "status": "not served", "reasons": why}]
    x, y, g_out, flat = _inputs(shape, n, dtype, device)
    start = time.perf_counter()
    engine = backends.bind(shape, device=device, rows=n, input_dtype=dtype, backend=name)
    got = _ops(engine, x, y, g_out, flat)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    first_s = time.perf_counter() - start
    oracle = backends.bind(shape, device=device, rows=n, input_dtype=dtype, options=Options("fp32"),
                           backend="torch")  # fmt: skip
    want = _ops(oracle, x, y, g_out, flat)
    precision = engine.options.precision
    rounded = None
    if precision == "bf16":
        rounded = _ops(oracle, x.bfloat16().to(dtype), y, g_out, flat.bfloat16().float())
    records = []
    for op in ("forward", "features", "loss", "gradient", "backward", "adam"):
        err = relative_error(got[op], want[op])
        tol = SELF_CHECK_TOLERANCE[precision]
        if rounded is not None:
            tol = max(tol, 2 * relative_error(rounded[op], want[op]))
        status = "ok" if err <= tol else "FAIL"
        records.append({**base, "op": op, "precision": precision,
                        "error": err, "tolerance": tol, "status": status})  # fmt: skip
    nan_ok = bool(torch.isnan(got["nan_loss"]))
    records.append({**base, "op": "nan_propagates", "status": "ok" if nan_ok else "FAIL"})
    records.append({**base, "op": "first_call_s", "seconds": round(first_s, 2), "status": "ok"})
    return records


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", help="append records here (default $MGDL_FAST_RECORDS)")
    parser.add_argument("--tiny", action="store_true", help="CPU dry run at small sizes")
    args = parser.parse_args()
    device = torch.device("cpu" if args.tiny else "cuda")
    shapes, n = (TINY, 300) if args.tiny else (HEADLINE, 65_536 + 17)
    # Kernels first (what this stage is for), the torch backend's fallback precision last.
    names = [*(b for b in backends.backend_names() if b != "torch"), "torch"]
    append({"op": "environment", **environment(device)}, args.records)
    failed = 0
    for name in names:
        for dims, dtype in shapes:
            try:
                result = check(name, dims, dtype, n, device)
            except Exception as exc:  # one failing kernel must not hide the others
                result = [{"backend": name, "shape": list(dims), "op": "all", "status": "ERROR",
                           "error": f"{type(exc).__name__}: {exc}",
                           "traceback": traceback.format_exc()[-2000:]}]  # fmt: skip
            for record in result:
                append(record, args.records)
                failed += record["status"] in ("FAIL", "ERROR")
    print(f"{failed} records failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

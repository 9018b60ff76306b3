"""Ahead-of-time compile of every Triton kernel for sm_90 (H100), without a GPU.

The interpreter runs kernels the GPU compiler rejects (a tl.dot with K < 16, more shared memory
than an SM has), so every kernel and its important constexpr variants also go through
``triton.compile(ASTSource(...), target=GPUTarget("cuda", 90, 32))``, built from the same launch
plans the host code runs (same arguments, constexprs, warps and stages).

Importing Triton under TRITON_INTERPRET=1 turns its own library functions (tl.zeros, ...) into
interpreter objects that the compiler cannot call, so the compiles run in subprocesses started
without it: ``python tests/test_triton_aot.py [--ptxas] [VARIANT ...]`` prints one JSON line
per compiled kernel (``--ptxas`` adds registers and spills from ``ptxas -v``; bench/aot_report.py
prints them as a table).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
H100_SHARED_BYTES = 232_448
SM90_PROGRAMS = 132
# name: (op, D, W, L, C, input dtype, precision, deterministic, optional outputs)
# (optional outputs: the features dtype for block_fwd, grad_x for block_bwd). W = 128 unless
# the variant exercises padding (48 -> 64) or the widest block (256).
VARIANTS = {
    "fwd-g1-tf32-L2": ("block_fwd", 2, 128, 2, 1, "fp32", "tf32", True, "bf16"),
    "fwd-g1-tf32-L3": ("block_fwd", 2, 128, 3, 1, "fp32", "tf32", True, None),
    "fwd-g2-bf16-L2": ("block_fwd", 128, 128, 2, 1, "bf16", "bf16", True, "bf16"),
    "fwd-g2-bf16-L3": ("block_fwd", 128, 128, 3, 1, "bf16", "bf16", True, "bf16"),
    "fwd-g2-tf32-L2": ("block_fwd", 128, 128, 2, 1, "fp32", "tf32", True, "fp32"),
    "fwd-odd-tf32": ("block_fwd", 3, 48, 4, 3, "fp32", "tf32", True, "fp32"),
    "step-g1-tf32-L2": ("grade_step", 2, 128, 2, 1, "fp32", "tf32", True, None),
    "step-g1-tf32-L3": ("grade_step", 2, 128, 3, 1, "fp32", "tf32", True, None),
    "step-g2-bf16-L2": ("grade_step", 128, 128, 2, 1, "bf16", "bf16", True, None),
    "step-g2-bf16-L3": ("grade_step", 128, 128, 3, 1, "bf16", "bf16", True, None),
    "step-g2-tf32-L2": ("grade_step", 128, 128, 2, 1, "fp32", "tf32", True, None),
    "step-g2-bf16-L2-atomic": ("grade_step", 128, 128, 2, 1, "bf16", "bf16", False, None),
    "step-g2-ieee-w32": ("grade_step", 32, 32, 2, 1, "fp32", "ieee", True, None),
    "step-odd-tf32": ("grade_step", 3, 48, 4, 3, "fp32", "tf32", True, None),
    "step-w256-bf16": ("grade_step", 256, 256, 2, 1, "bf16", "bf16", True, None),
    "fwd-w256-bf16": ("block_fwd", 256, 256, 2, 1, "bf16", "bf16", True, "bf16"),
    "step-w256-tf32": ("grade_step", 2, 256, 2, 1, "fp32", "tf32", True, None),
    "bwd-g1-tf32-L2": ("block_bwd", 2, 128, 2, 1, "fp32", "tf32", True, True),
    "bwd-g2-bf16-L2": ("block_bwd", 128, 128, 2, 1, "bf16", "bf16", True, True),
    "bwd-g2-bf16-L3-atomic": ("block_bwd", 128, 128, 3, 1, "bf16", "bf16", False, None),
    "bwd-g2-tf32-L2": ("block_bwd", 128, 128, 2, 1, "fp32", "tf32", True, True),
    "adam": ("adam_step", 0, 128, 2, 1, "fp32", "tf32", True, None),
    "gd": ("gd_step", 0, 128, 2, 1, "fp32", "tf32", True, None),
}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def plan(name: str) -> list:
    """The launches the host code would make for variant ``name`` (CPU tensors stand in for
    device ones; only their dtypes and alignment reach the compiler)."""
    from mgdl_fast import BlockParams, BlockShape
    from mgdl_fast import _triton as tri

    op, d, w, layers, c, x_dtype, precision, det, extra = VARIANTS[name]
    params = BlockParams.init(BlockShape(d or w, w, layers, c), seed=0)
    target, n = tri.Target(False, SM90_PROGRAMS), 4096
    x = torch.zeros(n, d or w, dtype=DTYPES[x_dtype])
    if op == "adam_step":
        flat = params.flat
        return [
            tri.plan_adam(flat, flat, flat, flat, step=3, lr=1e-3, beta1=0.9, beta2=0.999, eps=1e-8)
        ]
    if op == "gd_step":
        return [tri.plan_gd(params.flat, params.flat, lr=1e-3)]
    if op == "block_fwd":
        feats = torch.zeros(n, w, dtype=DTYPES[extra]) if extra else None
        return tri.plan_block_fwd(x, params, torch.zeros(n, c), feats, precision, target)
    grad, loss = params.zeros_like(), torch.zeros(())
    if op == "grade_step":
        return tri.plan_grade_step(x, torch.zeros(n, c), params, grad, loss, precision, det, target)
    grad_x = torch.zeros_like(x) if extra else None
    return tri.plan_block_bwd(x, params, torch.zeros(n, c), grad, grad_x, precision, det, target)


def compile_launch(launch):
    """``triton.compile`` of one launch for sm_90, with the signature and 16-byte alignment
    hints the JIT launcher would derive from the same arguments."""
    import triton
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend, GPUTarget
    from triton.compiler import ASTSource

    fn = launch.function()
    signature, attrs = {}, {}
    for i, (param, arg) in enumerate(zip(fn.params, launch.args)):
        kind, spec = native_specialize_impl(BaseBackend, arg, False, True, True)
        # The JIT would also turn an integer equal to 1 into a constant; keep it an argument.
        signature[param.name] = "i32" if kind == "constexpr" else kind
        if spec == "D":
            attrs[(i,)] = [["tt.divisibility", 16]]
    signature.update({name: "constexpr" for name in launch.constexprs})
    source = ASTSource(fn, signature, dict(launch.constexprs), attrs)
    return triton.compile(source, target=GPUTarget("cuda", 90, 32), options=launch.options)


def ptxas_usage(ptx: str) -> dict:
    """Registers and spill bytes per thread from ``ptxas -v`` (Triton's bundled ptxas)."""
    import tempfile

    import triton

    ptxas = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "ptxas"
    with tempfile.NamedTemporaryFile("w", suffix=".ptx") as f:
        f.write(ptx)
        f.flush()
        cmd = [str(ptxas), "-v", "--gpu-name", "sm_90a", f.name, "-o", os.devnull]
        log = subprocess.run(cmd, capture_output=True, text=True).stderr
    usage = {}
    for line in log.splitlines():
        if "Used" in line and "registers" in line:
            usage["registers"] = int(line.split("Used")[1].split("registers")[0])
        if "spill stores" in line:
            usage["spill_stores"] = int(line.split("bytes spill stores")[0].split(",")[-1])
    return usage


def report(names: list[str], with_ptxas: bool) -> None:
    """Compile each variant's kernels once and print a JSON line per kernel."""
    seen = set()
    for name in names:
        for launch in plan(name):
            key = (launch.kernel, tuple(sorted(launch.constexprs.items())), str(launch.options))
            if key in seen:
                continue
            seen.add(key)
            row = {"variant": name, "kernel": launch.kernel, "constexprs": launch.constexprs}
            start = time.perf_counter()
            try:
                compiled = compile_launch(launch)
            except Exception as exc:  # report every failing kernel, not only the first
                row["error"] = f"{type(exc).__name__}: {exc}"[-2000:]
            else:
                ptx = compiled.asm["ptx"]
                row.update(shared=compiled.metadata.shared, wgmma=ptx.count("wgmma.mma_async"))
                row.update(mma_sync=ptx.count("mma.sync"), options=launch.options)
                if with_ptxas:
                    row.update(ptxas_usage(ptx))
            row["seconds"] = round(time.perf_counter() - start, 2)
            print(json.dumps(row), flush=True)


def run_workers(names: list[str], workers: int, with_ptxas: bool = False) -> list[dict]:
    """Run ``report`` in ``workers`` subprocesses without TRITON_INTERPRET; parse their lines."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault("TRITON_CACHE_DIR", str(ROOT / ".triton_cache" / "aot"))
    flags = ["--ptxas"] if with_ptxas else []
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, *flags, *names[i::workers]],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )  # fmt: skip
        for i in range(workers)
    ]
    rows = []
    for proc in procs:
        out, err = proc.communicate(timeout=900)
        assert proc.returncode == 0, f"AOT worker failed:\n{err[-3000:]}"
        rows += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return rows


@pytest.fixture(scope="module")
def compiled():
    pytest.importorskip("triton")
    pytest.importorskip("triton.backends.nvidia")
    return run_workers(list(VARIANTS), workers=max(1, min(4, os.cpu_count() or 1)))


@pytest.mark.triton
def test_every_kernel_compiles_for_sm90(compiled):
    failed = {
        row["variant"] + ":" + row["kernel"]: row["error"] for row in compiled if "error" in row
    }
    assert not failed, failed
    assert {row["kernel"] for row in compiled} == {
        "_block_fwd_kernel",
        "_grade_step_kernel",
        "_block_bwd_kernel",
        "_reduce_partials_kernel",
        "_adam_kernel",
        "_gd_kernel",
    }


@pytest.mark.triton
def test_block_kernels_use_wgmma_for_bf16_and_tf32(compiled):
    """Hopper's tensor-core peak needs wgmma; Triton emits it for tiles with M >= 64."""
    for row in compiled:
        consts = row["constexprs"]
        if consts.get("DOT") in ("bf16", "tf32") and consts["BM"] >= 64:
            assert row.get("wgmma", 0) > 0, f"{row['variant']}: no wgmma in {row['kernel']}"


@pytest.mark.triton
def test_shared_memory_fits_an_h100(compiled):
    for row in compiled:
        shared = row.get("shared", 0)
        assert shared <= H100_SHARED_BYTES, f"{row['variant']}: {row['kernel']} needs {shared} B"


if __name__ == "__main__":
    args = sys.argv[1:]
    use_ptxas = "--ptxas" in args
    report([a for a in args if a != "--ptxas"] or list(VARIANTS), use_ptxas)

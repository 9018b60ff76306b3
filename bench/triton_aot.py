"""Ahead-of-time compiles of the engine's launches for an H100 (sm_90), without a GPU, and what
the compiler's output says about them.

``python -m bench.triton_aot SPEC_JSON ...`` (from the checkout's root) binds a
``TritonEngine`` planned for 132 SMs on CPU tensors (only their dtypes and alignment reach the
compiler), compiles every launch of the ops a spec names and prints one JSON line per kernel (see
``inspect``). It must run without ``TRITON_INTERPRET=1``: under the interpreter Triton's own
library functions are interpreter objects the compiler cannot call, so ``run_workers`` starts
these processes.

A spec: ``{"id", "shape": [D, W, L, C], "input": "fp32"|"bf16", "precision": "fp32"|"tf32"|
"bf16", "deterministic": bool, "rows": N, "ops": ["forward", "step", "backward", "update"],
"features": "fp32"|"bf16"|null, "grad_x": bool}``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SM90_PROGRAMS = 132
CACHE_ENV = "TRITON_CACHE_DIR"
DEFAULT_CACHE = ROOT / ".triton_cache" / "aot"
_DTYPES = {"fp32": "float32", "bf16": "bfloat16"}
# PTX float min/max without .NaN (e.g. max.f32, max.ftz.f32, min.bf16x2): they return the other
# operand when one is NaN, which would hide a diverged weight behind a ReLU.
NAN_SUPPRESSING_MINMAX = re.compile(r"\b(?:max|min)(?:\.ftz)?\.(?:f32|f16|bf16|f16x2|bf16x2|f64)\b")


def compile_launch(launch):
    """``triton.compile`` of one launch for sm_90, with the signature and 16-byte alignment
    hints the JIT launcher derives from the same arguments. Returns the kernel and the seconds
    the compile took (recorded on a cache miss, so a cached kernel reports its real cost)."""
    from triton._C.libtriton import native_specialize_impl
    from triton.backends.compiler import BaseBackend
    from triton.compiler import ASTSource

    fn = launch.function()
    signature, attrs = {}, {}
    for i, (param, arg) in enumerate(zip(fn.params, launch.args)):
        kind, spec = native_specialize_impl(BaseBackend, arg, False, True, True)
        # The JIT turns an integer equal to 1 into a constant; keep it an argument.
        signature[param.name] = "i32" if kind == "constexpr" else kind
        if spec == "D":
            attrs[(i,)] = [["tt.divisibility", 16]]
    signature.update({name: "constexpr" for name in launch.constexprs})
    source = ASTSource(fn, signature, dict(launch.constexprs), attrs)
    kernel, log, seconds = _compile(source, launch.options, fresh=False)
    path = Path(os.environ.get(CACHE_ENV, DEFAULT_CACHE)) / "mgdl_usage" / f"{kernel.hash}.json"
    if "Used" not in log and path.exists():
        return kernel, json.loads(path.read_text())
    if "Used" not in log:
        # Cached by Triton but not measured here: compile again to see ptxas and the time.
        kernel, log, seconds = _compile(source, launch.options, fresh=True)
    return kernel, _usage(path, log, seconds)


def _compile(source, options: dict, fresh: bool):
    """(kernel, ptxas log, seconds); ``fresh`` ignores Triton's cache."""
    import triton
    from triton import knobs
    from triton.backends.compiler import GPUTarget

    log = io.StringIO()
    start = time.perf_counter()
    with knobs.nvidia.scope(), knobs.compilation.scope(), contextlib.redirect_stdout(log):
        knobs.nvidia.dump_ptxas_log = True
        knobs.compilation.always_compile = fresh
        kernel = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=options)
    return kernel, log.getvalue(), time.perf_counter() - start


def _first_int(pattern: str, text: str) -> int:
    """The first integer ``pattern`` captures in ``text``; a ptxas log without it is an error."""
    found = re.search(pattern, text)
    if found is None:
        raise RuntimeError(f"ptxas log has no match for {pattern!r}:\n{text}")
    return int(found.group(1))


def _usage(path: Path, ptxas_log: str, seconds: float) -> dict:
    """Registers, spill bytes and compile seconds, kept beside the Triton cache (a cache hit
    runs no ptxas and takes no time, so the first compile's figures are reused)."""
    usage = {
        "registers": _first_int(r"Used (\d+) registers", ptxas_log),
        "spill_bytes": _first_int(r"(\d+) bytes spill stores", ptxas_log),
        "compile_s": round(seconds, 2),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(usage))
    return usage


def tile_loop(ptx: str) -> tuple[int, int] | None:
    """(first, last) line of the outermost PTX loop (a backward branch), or None."""
    lines = ptx.splitlines()
    labels = {
        m.group(1): i for i, line in enumerate(lines) if (m := re.match(r"(\$L__BB\w+):", line))
    }
    best = None
    for i, line in enumerate(lines):
        m = re.search(r"\bbra(?:\.uni)?\s+(\$L__BB\w+);", line)
        if m and labels.get(m.group(1), i) < i:
            span = (labels[m.group(1)], i)
            if best is None or span[1] - span[0] > best[1] - best[0]:
                best = span
    return best


def _mma_flop(lines: list[str], num_warps: int) -> int:
    """Tensor-core FLOPs one program issues for these lines: a wgmma runs once per warpgroup,
    an mma.sync once per warp."""
    flop = 0
    for line in lines:
        if m := re.search(r"wgmma\.mma_async\S*\.m(\d+)n(\d+)k(\d+)", line):
            flop += 2 * int(m[1]) * int(m[2]) * int(m[3]) * (num_warps // 4)
        elif m := re.search(r"\bmma\.sync\S*\.m(\d+)n(\d+)k(\d+)", line):
            flop += 2 * int(m[1]) * int(m[2]) * int(m[3]) * num_warps
    return flop


def _loop_span(lines: list[str]) -> tuple[int, int]:
    """(first, last) line of the tile loop: the outermost scf.for / scf.while of the TTGIR
    (the whole function when a program runs one tile)."""
    start = next(
        (i for i, line in enumerate(lines) if re.search(r"scf\.(for|while)\b", line)), None
    )
    if start is None:
        return 0, len(lines)
    depth = 0
    for i in range(start, len(lines)):
        depth += lines[i].count("{") - lines[i].count("}")
        if depth <= 0 and i > start:
            return start, i
    return start, len(lines)


def weight_loads_in_loop(ttgir: str, weight_args: tuple[str, ...] = ("p_ptr", "w_ptr")) -> int:
    """Global loads inside the tile loop whose pointers derive from a parameter argument
    (through addptr / splat / broadcast / loop-carried values)."""
    lines = ttgir.splitlines()
    defs: dict[str, list[str]] = {}
    inits: dict[str, str] = {}
    for line in lines:
        if m := re.match(r"\s*(%[\w.]+)(?::\d+)?\s*=\s*[\w.]+\s*(.*)", line):
            defs[m.group(1)] = re.findall(r"%[\w.]+", m.group(2))
        if "iter_args(" in line or "scf.while" in line:
            inits.update(re.findall(r"(%[\w.]+) = (%[\w.]+)", line.split("iter_args(")[-1]))

    def root(value: str) -> str:
        for _ in range(500):
            if value in inits:
                value = inits[value]
            elif defs.get(value):
                value = defs[value][0]
            else:
                break
        return value.lstrip("%")

    start, end = _loop_span(lines)
    pattern = (
        r"(?:tt\.load|ttg\.async_copy_global_to_local|tt\.descriptor_load"
        r"|ttng\.async_tma_copy_global_to_local)\s+(%[\w.]+)"
    )
    return sum(
        1
        for line in lines[start:end]
        if (m := re.search(pattern, line)) and root(m.group(1)) in weight_args
    )


def _global_ops(ttgir: str) -> list[dict]:
    """Every global load, store and atomic of the TTGIR: where (inside the tile loop or
    after it), how many elements, their bytes, and the vector width its layout gives a thread
    (sizePerThread along the fastest dimension; 2 for an MMA layout, 1 otherwise)."""
    lines = ttgir.splitlines()
    widths = {}
    for line in lines:
        if m := re.match(
            r"(#\w+) = #ttg\.blocked<\{sizePerThread = \[([\d, ]+)\].*order = \[(\d+)", line
        ):
            widths[m.group(1)] = int(m.group(2).split(",")[int(m.group(3))])
        elif m := re.match(r"(#\w+) = #ttg\.nvidia_mma", line):
            widths[m.group(1)] = 2
    start, end = _loop_span(lines)
    ops = []
    for i, line in enumerate(lines):
        m = re.search(
            r"\b(tt\.load|tt\.store|tt\.atomic_rmw|ttg\.async_copy_global_to_local)\b", line
        )
        if not m:
            continue
        t = re.search(r"tensor<([\dx]+)x!tt\.ptr<(\w+)>, (#\w+)>", line)
        scalar = re.search(r"!tt\.ptr<(\w+)>", line)
        if t:
            numel = 1
            for dim in t.group(1).split("x"):
                numel *= int(dim)
            dtype, width = t.group(2), widths.get(t.group(3), 1)
        elif scalar:
            numel, dtype, width = 1, scalar.group(1), 1
        else:
            continue
        item = _first_int(r"(\d+)", dtype) // 8
        where = "loop" if start < i < end else ("after" if i >= end else "before")
        kind = {"tt.store": "store", "tt.atomic_rmw": "atomic"}.get(m.group(1), "load")
        ops.append({"where": where, "kind": kind, "bytes": numel * item, "width": width})
    return ops


def inspect(kernel, usage: dict, launch) -> dict:
    """What one compiled kernel shows: resources, issued MMA work per tile, global reductions
    (inside the tile loop and after it), NaN-propagating ReLUs, tf32 rounding."""
    ptx, num_warps = kernel.asm["ptx"], launch.options.get("num_warps", 4)
    lines = ptx.splitlines()
    loop = tile_loop(ptx)
    body = lines[loop[0] : loop[1] + 1] if loop else lines
    ops = _global_ops(kernel.asm["ttgir"])

    def total(where: str, kinds: tuple[str, ...], scalar: bool = False) -> int:
        return sum(o["bytes"] for o in ops if o["where"] == where and o["kind"] in kinds
                   and (not scalar or o["width"] == 1))  # fmt: skip

    return {
        "kernel": launch.kernel,
        "constexprs": launch.constexprs,
        "options": launch.options,
        "grid": list(launch.grid),
        "int_args": {
            p.name: a for p, a in zip(launch.function().params, launch.args) if type(a) is int
        },
        **usage,
        "smem_bytes": kernel.metadata.shared,
        "has_loop": loop is not None,
        "mma_flop_per_tile": _mma_flop(body, num_warps),
        "wgmma": len(re.findall(r"wgmma\.mma_async", ptx)),
        "loop_reduction_bytes": total("loop", ("atomic",)),
        "loop_scalar_reduction_bytes": total("loop", ("atomic",), scalar=True),
        "epilogue_store_bytes": total("after", ("store", "atomic")),
        "epilogue_scalar_store_bytes": total("after", ("store", "atomic"), scalar=True),
        "loop_load_bytes": total("loop", ("load",)),
        "loop_scalar_load_bytes": total("loop", ("load",), scalar=True),
        "weight_loads_in_loop": weight_loads_in_loop(kernel.asm["ttgir"]),
        "max_nan": len(re.findall(r"\bmax\.NaN\.f32", ptx)),
        "nan_suppressing_minmax": len(NAN_SUPPRESSING_MINMAX.findall(ptx)),
        "cvt_tf32": len(re.findall(r"cvt\.rna\.tf32\.f32", ptx)),
    }


def launches(spec: dict):
    """(op, launch) pairs the engine runs for ``spec``, planned for 132 SMs."""
    import torch

    from mgdl_fast.backends.base import Options
    from mgdl_fast.backends.triton.engine import TritonEngine
    from mgdl_fast.backends.triton.plans import Target
    from mgdl_fast.block import BlockParams, BlockShape

    d, w, layers, c = spec["shape"]
    shape, n = BlockShape(d, w, layers, c), spec["rows"]
    x_dtype = getattr(torch, _DTYPES[spec["input"]])
    options = Options(spec["precision"], spec.get("deterministic", True))
    engine = TritonEngine(
        shape, torch.device("cpu"), x_dtype, n, options, interpret=False,
        target=Target(False, SM90_PROGRAMS),
    )  # fmt: skip
    flat = BlockParams.init(shape, seed=0).flat
    x, y = torch.empty(n, d, dtype=x_dtype), torch.empty(n, c)
    grad, out = torch.empty_like(flat), torch.empty(n, c)
    pairs = []
    for op in spec["ops"]:
        if op == "forward":
            feats = spec.get("features")
            f = torch.empty(n, w, dtype=getattr(torch, _DTYPES[feats])) if feats else None
            found = engine.forward_launches(x, flat, out, f)
        elif op == "step":
            found = engine.step_launches(x, y, flat, grad)
        elif op == "backward":
            gx = torch.empty(n, d) if spec.get("grad_x") else None
            found = engine.backward_launches(x, flat, out, grad, gx)
        else:
            state = engine.optimizer_state("adam", 1e-3, flat.numel())
            found = engine.update_launches(flat, grad, state)
        pairs += [(op, launch) for launch in found]
    return pairs


def report(specs: list[dict]) -> None:
    """Compile each spec's launches and print one JSON line per kernel (errors included)."""
    for spec in specs:
        for op, launch in launches(spec):
            row = {"id": spec["id"], "op": op, "kernel": launch.kernel}
            try:
                kernel, usage = compile_launch(launch)
                row.update(inspect(kernel, usage, launch))
            except Exception as exc:  # report every failing kernel, not only the first
                row["error"] = f"{type(exc).__name__}: {exc}"[-3000:]
            print(json.dumps(row), flush=True)


def run_workers(specs: list[dict], workers: int | None = None, timeout: float = 1800) -> list[dict]:
    """``report`` in subprocesses started without TRITON_INTERPRET, sharing the compile cache
    (``$TRITON_CACHE_DIR``, default ``.triton_cache/aot`` in the work tree)."""
    try:
        import triton.backends.nvidia  # noqa: F401
    except ImportError as exc:
        raise RuntimeError(f"Triton's NVIDIA backend is not importable: {exc}") from exc
    workers = max(1, min(workers or os.cpu_count() or 1, len(specs)))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.setdefault(CACHE_ENV, str(DEFAULT_CACHE))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.triton_aot",
                *(json.dumps(s) for s in specs[i::workers]),
            ],
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
        out, err = proc.communicate(timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"AOT compile worker failed:\n{err[-3000:]}")
        rows += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return rows


if __name__ == "__main__":
    report([json.loads(arg) for arg in sys.argv[1:]])

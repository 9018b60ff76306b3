"""Compile-time report of the CUDA core (no GPU needed), one record per kernel per headline
variant: registers, spills and ptxas warnings from ``nvcc -Xptxas -v`` with the build's flags;
tensor-core instructions, global reductions, serial flush chains and weight loads inside the
tile loop from the SASS of the installed ``mgdl_fast._C`` (cuobjdump extracts its sm_90a
cubins, nvdisasm prints them with source lines); the shared-memory plan from ``_C.plan``; and
the replay of the dynamic shared-memory attribute over the plan sequences of the GPU tests and
of two consecutive fits (tests/backends/cuda/plan_replay.py).

    python bench/kernel_report_cuda.py [--json FILE] [--check]

bench/kernel_report.py (the driver) and tests/backends/cuda/test_report.py call ``records()``
and ``violations(records)``. A missing tool raises ToolMissing with a one-line reason.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.sass import (  # noqa: E402
    ToolMissing,
    find_tool,
    global_reductions,
    mma_shapes,
    nan_suppressing_minmax,
    sass_functions,
    serial_flush_chains,
    weight_loads_in_loop,
)
from tests.backends.cuda import plan_replay  # noqa: E402

# Dynamic shared memory per block on an H100/H200 (opt-in less the kernels' static 1 KB).
HOPPER_SMEM = plan_replay.HOPPER_DYNAMIC_SMEM
# Per SM: 228 KB of shared memory (1 KB of it reserved per resident block), 64K registers.
SM_SMEM, BLOCK_RESERVED_SMEM, SM_REGS = 233_472, 1024, 65_536
PEAK_FLOPS = 800e12
NVCC_FLAGS = ("-std=c++17", "--expt-relaxed-constexpr", "-lineinfo", "-arch=sm_90a")
KERNEL_SOURCES = (
    "block_fwd.cu",
    *(f"block_train_w{w}.cu" for w in (32, 64, 128, 256)),
    "reduce.cu",
    "optim.cu",
)
# (name, D, W, L, C, input dtype): the headline blocks (issue 13).
VARIANTS = (
    ("grade1", 2, 128, 2, 1, "float32"),
    ("grade2", 128, 128, 2, 1, "bfloat16"),
    ("grade1_3hidden", 2, 128, 3, 1, "float32"),
    ("grade2_3hidden", 128, 128, 3, 1, "bfloat16"),
    ("colour_w256", 256, 256, 3, 3, "bfloat16"),
)
HEADLINE_KERNELS = ("block_train_kernel", "block_fwd_kernel")


def extension():
    try:
        return importlib.import_module("mgdl_fast._C")
    except ImportError as exc:
        raise ToolMissing(
            f"mgdl_fast._C is not built ({exc}): reinstall with MGDL_FAST_CUDA=ON"
        ) from exc


# ---- nvcc -Xptxas -v -------------------------------------------------------------------------

PTXAS_FUNC = re.compile(r"Compiling entry function '(\w+)' for '(\w+)'")
PTXAS_PROPS = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill")
PTXAS_REGS = re.compile(r"Used (\d+) registers")
PTXAS_TIME = re.compile(r"Compile time = ([\d.]+) ms")
PTXAS_C7519 = re.compile(r"\(C7519\).*in function '(\w+)'")


def ptxas_report() -> dict[str, dict]:
    """Per mangled kernel: registers, stack, spills, C7519 warnings, ptxas seconds."""
    nvcc = find_tool("nvcc")
    with tempfile.TemporaryDirectory() as tmp:
        runs = [
            subprocess.Popen(
                [
                    nvcc,
                    *NVCC_FLAGS,
                    "-Xptxas",
                    "-v",
                    "-cubin",
                    f"-I{ROOT / 'csrc' / 'include'}",
                    "-o",
                    str(Path(tmp) / f"{src}.cubin"),
                    str(ROOT / "csrc" / src),
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            for src in KERNEL_SOURCES
        ]
        logs = [
            (src, run.communicate()[0], run.returncode) for src, run in zip(KERNEL_SOURCES, runs)
        ]
    info: dict[str, dict] = {}
    for src, log, code in logs:
        if code != 0:
            raise RuntimeError(f"nvcc failed on csrc/{src}:\n{log[-2000:]}")
        current = None
        for line in log.splitlines():
            if m := PTXAS_C7519.search(line):
                info.setdefault(m[1], {"c7519": 0})["c7519"] += 1
            elif m := PTXAS_FUNC.search(line):
                current = info.setdefault(m[1], {"c7519": 0})
                current["source"] = src
            elif current is not None and (m := PTXAS_PROPS.search(line)):
                current["stack"], current["spill_stores"] = int(m[1]), int(m[2])
                current["spill_loads"] = int(m[3])
            elif current is not None and (m := PTXAS_REGS.search(line)):
                current["registers"] = int(m[1])
            elif current is not None and (m := PTXAS_TIME.search(line)):
                current["compile_s"] = round(float(m[1]) / 1000, 3)
    return info


# ---- records ---------------------------------------------------------------------------------


def kernel_args(name: str) -> tuple[str, tuple[int, ...]] | None:
    m = re.match(r"_ZN4mgdl\d+(\w+?_kernel)I((?:Li\d+E)+)E", name)
    if not m:
        return None
    return m[1], tuple(int(v) for v in re.findall(r"Li(\d+)E", m[2]))


def find_kernel(functions, kernel: str, args: tuple[int, ...]) -> str | None:
    for name in functions:
        parsed = kernel_args(name)
        if parsed and parsed[0] == kernel and parsed[1][: len(args)] == args:
            return name
    return None


def needed_flop_per_row(d: int, w: int, layers: int, train: bool) -> int:
    """Tensor-core work per row: every W x W layer forward; training adds each one's dW and the
    input gradient of each but the first layer (its inputs are frozen)."""
    mma = layers - (1 if d != w else 0)
    per_layer = 2 * w * w
    if not train:
        return mma * per_layer
    dx = mma - (1 if d == w else 0)
    return (2 * mma + dx) * per_layer


def resident_blocks(registers: int, threads: int, smem: int) -> int:
    """Blocks per SM on sm_90 from registers (allocated per warp in units of 256, four
    sub-partitions of 16K) and shared memory."""
    per_warp = -(-registers * 32 // 256) * 256
    warps = (SM_REGS // 4 // per_warp) * 4
    by_regs = warps // (threads // 32)
    by_smem = SM_SMEM // (smem + BLOCK_RESERVED_SMEM)
    return min(by_regs, by_smem)


def variant_record(variant, kernel, ext, ptxas, functions) -> dict:
    name, d, w, layers, c, dtype = variant
    train = kernel == "block_train_kernel"
    plan = ext.plan(d, w, layers, c, train, HOPPER_SMEM)
    args = tuple(plan.get("template_args", (w,))) if plan else (w,)
    mangled = find_kernel(functions, kernel, args)
    if mangled is None:
        raise RuntimeError(f"{kernel}<{args}> not found in the SASS of {ext.__file__}")
    fn, res = functions[mangled], ptxas.get(mangled, {})
    needed = needed_flop_per_row(d, w, layers, train)
    shapes = mma_shapes(fn)
    injected = sum(v for k, v in shapes.items() if "64x8x16" in k)
    # Issued: the schedule issues exactly the needed products (no duplicated warpgroups, no
    # padding at these widths); a warpgroup.arrive ptxas injects adds a dummy 64x8x16 HGMMA
    # per site and tile.
    issued = needed + (injected * 2 * 64 * 8 * 16 / plan["rows"] if plan else 0)
    reductions = global_reductions(fn)
    vector = any(re.search(r"F32x[24]|\.64|\.128", k) for k in reductions) if reductions else False
    l2_layers = [
        i for i in range(layers) if i >= (1 if d != w else 0) and i not in plan["dw_smem_layers"]
    ] if plan and train else []  # fmt: skip
    rmw_bytes = 4 if reductions else 8
    reduction_bytes = len(l2_layers) * w * w * rmw_bytes / plan["rows"] if plan else None
    record = {
        "backend": "cuda",
        "kernel": kernel,
        "variant": name,
        "shape": [d, *[w] * layers, c],
        "dtype": "bf16",
        "input_dtype": dtype,
        "served": plan is not None,
        "instantiation": f"{kernel}<{', '.join(map(str, args))}>",
        "registers": res.get("registers"),
        "spill_bytes": res.get("spill_stores", 0) + res.get("spill_loads", 0),
        "stack_bytes": res.get("stack"),
        "smem_bytes": plan["smem_bytes"] if plan else None,
        "warps": plan["warps"] if plan else None,
        "tile_rows": plan["rows"] if plan else None,
        "dw_smem_layers": plan["dw_smem_layers"] if plan and train else [],
        "blocks_per_sm": (
            resident_blocks(res["registers"], 32 * plan["warps"], plan["smem_bytes"])
            if plan and "registers" in res
            else None
        ),
        "mma_issued_flop_per_row": round(issued, 1) if plan else None,
        "mma_needed_flop_per_row": needed,
        "mma_static": shapes,
        "global_reduction_bytes_per_row": reduction_bytes if train else 0,
        "global_reductions_static": reductions,
        "vector_reductions": vector,
        "serial_flush_chains": serial_flush_chains(fn),
        "weight_loads_in_loop": weight_loads_in_loop(fn),
        "nan_propagating_max": nan_suppressing_minmax(fn) == 0,
        "shfl_static": sum(i.op.startswith("SHFL") for i in fn.instrs),
        "barriers_static": sum(i.op.startswith("BAR.SYNC") for i in fn.instrs),
        "c7519_warnings": res.get("c7519", 0),
        "compile_s": res.get("compile_s"),
        "bound_s_per_128_rows": issued * 128 / PEAK_FLOPS if plan else None,
    }
    return record


def replay_record(ext) -> dict:
    failures = plan_replay.replay_all(ext)
    return {
        "backend": "cuda",
        "kernel": "smem_attribute_replay",
        "variant": "plan_sequences",
        "shape": [],
        "sequences": sorted(plan_replay.sequences(ext)),
        "failures": failures,
    }


def records() -> list[dict]:
    ext = extension()
    start = time.perf_counter()
    ptxas = ptxas_report()
    functions = sass_functions(ext.__file__)
    out = [
        variant_record(v, kernel, ext, ptxas, functions)
        for v in VARIANTS
        for kernel in HEADLINE_KERNELS
    ]
    for kernel in ("reduce_partials_kernel", "adam_kernel"):
        mangled = next(n for n in functions if kernel in n)
        res = ptxas.get(mangled, {})
        spills = res.get("spill_stores", 0) + res.get("spill_loads", 0)
        out.append({
            "backend": "cuda", "kernel": kernel, "variant": "any", "shape": [],
            "registers": res.get("registers"), "spill_bytes": spills,
            "compile_s": res.get("compile_s"),
            "nan_propagating_max": nan_suppressing_minmax(functions[mangled]) == 0,
        })  # fmt: skip
    out.append(replay_record(ext))
    out[-1]["report_s"] = round(time.perf_counter() - start, 1)
    return out


def violations(recs: list[dict]) -> list[str]:
    """The CI checks: every kernel's float min/max propagate NaN; no spills and no serial
    flush chains in a served headline variant, no plan sequence the shared-memory attribute
    replay rejects."""
    why = []
    for r in recs:
        label = f"{r['kernel']} {r.get('variant')} {r.get('shape')}"
        if r["kernel"] == "smem_attribute_replay":
            why += [f"smem attribute replay: {f}" for f in r["failures"]]
            continue
        if r.get("nan_propagating_max") is not True:
            why.append(f"{label}: a float min/max that drops NaN (fmaxf instead of max.NaN)")
        if r.get("served") is False:
            continue
        if r.get("spill_bytes"):
            why.append(f"{label}: {r['spill_bytes']} bytes of register spills")
        if r.get("serial_flush_chains"):
            why.append(f"{label}: {r['serial_flush_chains']} serial global flush chains")
        if r.get("registers") is None:
            why.append(f"{label}: no ptxas report for this kernel")
    return why


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the records here")
    parser.add_argument("--check", action="store_true", help="exit 1 on any violation")
    args = parser.parse_args()
    recs = records()
    text = json.dumps(recs, indent=1)
    if args.json:
        Path(args.json).write_text(text + "\n")
    else:
        print(text)
    problems = violations(recs)
    for p in problems:
        print("VIOLATION", p, file=sys.stderr)
    if args.check and problems:
        sys.exit(1)


if __name__ == "__main__":
    main()

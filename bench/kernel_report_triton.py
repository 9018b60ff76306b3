"""The Triton half of the kernel report: one record per kernel per headline variant, read from
the sm_90 compiler's output (no GPU needed), and the CI checks on them.

Every figure comes from an ahead-of-time compile of the launches the engine plans for 132 SMs
at N = 1024^2 rows (``bench/triton_aot.py``):

- ``registers``, ``spill_bytes``: ``ptxas -v`` of the kernel's PTX (sm_90a).
- ``smem_bytes``: the shared memory Triton allocates.
- ``mma_issued_flop_per_row``: tensor-core FLOPs of the wgmma / mma.sync instructions inside the
  tile loop (a wgmma once per warpgroup), per row of the tile; ``mma_needed_flop_per_row``: the
  block's own products (2 * in * out per W x W layer product; the 1-3 wide input layer and the
  output layer are CUDA-core work).
- ``global_reduction_bytes_per_row``: gradient bytes each row sends to global memory: atomics
  inside the tile loop per row, plus the program's partial-row writes after the loop spread over
  its share of the 1024^2 rows (all lanes counted, an upper bound); for the reduction kernel the
  partial rows it reads.
- ``vector_reductions``: at most 2% of those bytes move in scalar (32-bit) instructions.
- ``weight_loads_in_loop``: TTGIR global loads inside the tile loop whose pointers derive from
  the parameters (every weight load when a program runs one tile).
- ``nan_propagating_max``: no float min/max in the PTX without ``.NaN`` (``max.f32`` turns a
  NaN activation into 0; ``max.NaN.f32`` keeps it).
- ``compile_s``: seconds of the first (uncached) compile on this machine.
- ``bound_s_per_128_rows``: max(issued MMA FLOPs / peak, global bytes / HBM) for 128 rows on a
  whole H100: 800 TFLOP/s bf16, 400 tf32, 60 fp32 (CUDA cores), 3.35 TB/s.
"""

from __future__ import annotations

HEADLINE_ROWS = 1 << 20
# name: (D, W, L, C, input dtype, precision)
HEADLINE = {
    "g1-tf32": (2, 128, 2, 1, "fp32", "tf32"),
    "g1-bf16": (2, 128, 2, 1, "fp32", "bf16"),
    "g2-bf16": (128, 128, 2, 1, "bf16", "bf16"),
    "g1-L3-bf16": (2, 128, 3, 1, "fp32", "bf16"),
    "g2-L3-bf16": (128, 128, 3, 1, "bf16", "bf16"),
    "w256-bf16": (256, 256, 3, 3, "bf16", "bf16"),
}
# The shapes tests/backends/triton/test_gpu.py runs beyond the headline ones (compile time only).
GPU_TESTS = {
    "gpu-fp32-odd": (3, 48, 4, 3, "fp32", "fp32"),
    "gpu-g2-tf32": (128, 128, 2, 3, "fp32", "tf32"),
}
PEAK_FLOPS = {"bf16": 800e12, "tf32": 400e12, "fp32": 60e12}
HBM_BYTES_PER_S = 3.35e12
# A gate against compile-time blow-ups (minutes), not a timing: the slowest variant, fp32 at
# width 48, compiles in 19 s on an idle 2-core CI machine and in 67 s beside three other jobs.
MAX_COMPILE_S = 90.0
MAX_ISSUED_OVER_NEEDED = 1.05
KERNEL_NAMES = {
    "_block_fwd_kernel": "block_fwd",
    "_grade_step_kernel": "grade_step",
    "_block_bwd_kernel": "block_bwd",
    "_reduce_partials_kernel": "reduce_partials",
    "_adam_kernel": "adam",
    "_weight_grad_kernel": "weight_grad",
}


def specs(variants: dict) -> list[dict]:
    return [
        {"id": name, "shape": [d, w, layers, c], "input": x, "precision": p, "rows": HEADLINE_ROWS,
         "ops": ["forward", "step", "backward"], "features": "bf16" if p == "bf16" else "fp32"}
        for name, (d, w, layers, c, x, p) in variants.items()
    ]  # fmt: skip


def needed_flop_per_row(kernel: str, consts: dict, d: int, w: int, layers: int) -> int:
    """2 * W^2 per W x W product the kernel owns: forward, the weight gradients it keeps (the
    others are weight_grad's, one layer per launch) and the input gradient of every layer but
    the first."""
    square = layers if d == w else layers - 1
    kept = min(square, consts.get("KEEP", square))
    products = {
        "_block_fwd_kernel": square,
        "_grade_step_kernel": square + kept + layers - 1,
        "_block_bwd_kernel": square + kept + layers - 1,
        "_weight_grad_kernel": 1,
    }.get(kernel, 0)
    return 2 * w * w * products


def _io_bytes_per_row(kernel: str, consts: dict, variant: tuple) -> int:
    """Global bytes per row a kernel must move besides its gradient reductions: inputs,
    targets or output gradients, features, and a scratch layer's g_l and h_l (layer > 0)."""
    d, w, layers, c, x, precision = variant
    x_bytes, half = d * (2 if x == "bf16" else 4), 2 if precision == "bf16" else 4
    # Scratch layers are the W x W layers below the last KEEP (kernels/_config.scratch_layers).
    first = 0 if d == w else 1
    scratch = range(first, layers - consts.get("KEEP", layers))
    written = sum(1 + (layer > 0) for layer in scratch) * w * half
    return {
        "_block_fwd_kernel": x_bytes + 4 * c + w * half,
        "_grade_step_kernel": x_bytes + 4 * c + written,
        "_block_bwd_kernel": x_bytes + 4 * c + written,
        "_weight_grad_kernel": 2 * w * half,
    }.get(kernel, 0)


def record(raw: dict, variant: tuple) -> dict:
    """The report's fields for one compiled kernel of a variant."""
    d, w, layers, c, x, precision = variant
    op, consts = raw["op"], raw["constexprs"]
    block = raw["kernel"] in (
        "_block_fwd_kernel",
        "_grade_step_kernel",
        "_block_bwd_kernel",
        "_weight_grad_kernel",
    )
    rows_per_tile = consts.get("BM", 1)
    programs = raw["grid"][0] if raw["kernel"] != "_reduce_partials_kernel" else None
    if raw["kernel"] == "_reduce_partials_kernel":
        partial_rows, stride = raw["int_args"]["num_rows"], raw["int_args"]["acc_stride"]
        reduction = 4.0 * partial_rows * stride / HEADLINE_ROWS
        total = raw["loop_load_bytes"] or 1
        scalar = raw["loop_scalar_load_bytes"] / total
    elif op in ("step", "backward"):
        rows_per_program = HEADLINE_ROWS / programs
        reduction = raw["loop_reduction_bytes"] / rows_per_tile
        reduction += raw["epilogue_store_bytes"] / rows_per_program
        total = raw["loop_reduction_bytes"] + raw["epilogue_store_bytes"] or 1
        scalar = (raw["loop_scalar_reduction_bytes"] + raw["epilogue_scalar_store_bytes"]) / total
    else:
        reduction, scalar = 0.0, 0.0
    # weight_grad runs one program per weight block: grid[1] of them cover the layer.
    blocks = raw["grid"][1] if len(raw["grid"]) > 1 else 1
    issued = raw["mma_flop_per_tile"] / rows_per_tile * blocks if block else 0
    needed = needed_flop_per_row(raw["kernel"], consts, d, w, layers)
    io = _io_bytes_per_row(raw["kernel"], consts, variant)
    bound = max(issued / PEAK_FLOPS[precision], (io + reduction) / HBM_BYTES_PER_S) * 128
    return {
        "backend": "triton",
        "kernel": KERNEL_NAMES.get(raw["kernel"], raw["kernel"]),
        "shape": [d, *[w] * layers, c],
        "dtype": precision,
        "registers": raw["registers"],
        "spill_bytes": raw["spill_bytes"],
        "smem_bytes": raw["smem_bytes"],
        "mma_issued_flop_per_row": round(issued),
        "mma_needed_flop_per_row": needed,
        "global_reduction_bytes_per_row": round(reduction, 2),
        "vector_reductions": scalar <= 0.02,
        "weight_loads_in_loop": raw["weight_loads_in_loop"],
        "nan_propagating_max": raw["nan_suppressing_minmax"] == 0,
        "compile_s": raw["compile_s"],
        "bound_s_per_128_rows": float(f"{bound:.3g}"),
    }


def collect(raws: list[dict], variants: dict) -> list[dict]:
    """Records of the compiled kernels of ``variants`` among ``raws`` (aot.report rows): one
    per kernel per variant, in compile order."""
    out, seen = [], set()
    for raw in raws:
        if raw["id"] not in variants:
            continue
        if "error" in raw:
            raise RuntimeError(f"{raw['id']} {raw['kernel']} does not compile: {raw['error']}")
        key = (raw["id"], raw["kernel"])
        if key not in seen:
            seen.add(key)
            out.append(record(raw, variants[raw["id"]]))
    return out


def records() -> list[dict]:
    """Every headline variant's kernels, then the GPU tests' other shapes (compiled here)."""
    from bench import triton_aot as aot

    raws = aot.run_workers(specs(HEADLINE) + specs(GPU_TESTS))
    return collect(raws, HEADLINE) + collect(raws, GPU_TESTS)


def _checked(rec: dict) -> str | None:
    shape = rec["shape"]
    for name, (d, w, layers, c, _, precision) in HEADLINE.items():
        if shape == [d, *[w] * layers, c] and rec["dtype"] == precision:
            return name
    return None


def violations(recs: list[dict]) -> list[str]:
    """The CI checks: every compile within 90 s and every float min/max NaN-propagating; for
    the width-128 headline kernels no spill, issued/needed <= 1.05, no weight load in the tile
    loop and vector reductions (W = 256 streams its weights: reported, not checked)."""
    why = []
    for rec in recs:
        name = f"triton {rec['kernel']} {rec['shape']} {rec['dtype']}"
        if rec["compile_s"] > MAX_COMPILE_S:
            why.append(f"{name}: compile {rec['compile_s']} s > {MAX_COMPILE_S} s")
        if rec["nan_propagating_max"] is not True:
            why.append(f"{name}: a float min/max that drops NaN (max.f32, not max.NaN.f32)")
        if _checked(rec) is None or rec["shape"][1] != 128:
            continue
        if rec["spill_bytes"]:
            why.append(f"{name}: spills {rec['spill_bytes']} bytes")
        needed = rec["mma_needed_flop_per_row"]
        if needed and rec["mma_issued_flop_per_row"] > MAX_ISSUED_OVER_NEEDED * needed:
            ratio = rec["mma_issued_flop_per_row"] / needed
            why.append(f"{name}: issued/needed MMA work {ratio:.2f} > {MAX_ISSUED_OVER_NEEDED}")
        if rec["weight_loads_in_loop"]:
            why.append(f"{name}: {rec['weight_loads_in_loop']} weight loads in the tile loop")
        if not rec["vector_reductions"]:
            why.append(f"{name}: scalar gradient reductions")
    return why

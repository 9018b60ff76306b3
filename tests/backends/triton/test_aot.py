"""Ahead-of-time compiles of the Triton kernels for sm_90 (H100), without a GPU, and the kernel
report's CI checks on them.

The interpreter runs kernels the GPU compiler rejects (a tl.dot with K < 16, more shared memory
than an SM has, a register operand it cannot lay out), so every launch the engine plans for the
report's headline shapes, the GPU tests' shapes and the other important variants (atomic
reduction, dL/dx, small and streamed widths, the optimizers) goes through ``triton.compile``
in subprocesses without TRITON_INTERPRET (``bench/triton_aot.py``). Compiles are
cached in ``.triton_cache/aot`` (``$TRITON_CACHE_DIR``), shared with bench/kernel_report.py.
"""

from __future__ import annotations

import pytest

from bench import kernel_report_triton as report

pytestmark = pytest.mark.triton

H100_SHARED_BYTES = 232_448
BLOCK_KERNELS = ("_block_fwd_kernel", "_grade_step_kernel", "_block_bwd_kernel")
# id: (D, W, L, C, input, precision, deterministic, ops, features, grad_x)
EXTRA = {
    "g2-bf16-atomic": (128, 128, 2, 1, "bf16", "bf16", False, ["step", "backward"], None, False),
    "g2-L3-bf16-atomic-gx": (128, 128, 3, 1, "bf16", "bf16", False, ["backward"], None, True),
    "g1-tf32-gx": (2, 128, 2, 1, "fp32", "tf32", True, ["backward", "update"], None, True),
    "w16-bf16": (3, 16, 2, 3, "fp32", "bf16", True, ["forward", "step"], "bf16", False),
    "w48-bf16": (48, 48, 4, 3, "bf16", "bf16", True, ["forward", "step"], "bf16", False),
    "w144-bf16": (144, 144, 2, 1, "bf16", "bf16", True, ["forward", "step"], "bf16", False),
}


def extra_specs() -> list[dict]:
    return [
        {"id": name, "shape": [d, w, layers, c], "input": x, "precision": p, "rows": 1 << 16,
         "deterministic": det, "ops": ops, "features": feats, "grad_x": gx}
        for name, (d, w, layers, c, x, p, det, ops, feats, gx) in EXTRA.items()
    ]  # fmt: skip


@pytest.fixture(scope="module")
def compiled():
    pytest.importorskip("triton.backends.nvidia")
    from bench import triton_aot as aot

    every = report.specs(report.HEADLINE) + report.specs(report.GPU_TESTS) + extra_specs()
    return aot.run_workers(every)


def test_every_kernel_compiles_for_sm90_within_the_report_limit(compiled):
    failed = {f"{r['id']}:{r['kernel']}": r["error"][-500:] for r in compiled if "error" in r}
    assert not failed, failed
    limit = report.MAX_COMPILE_S
    slow = {f"{r['id']}:{r['kernel']}": r["compile_s"] for r in compiled if r["compile_s"] > limit}
    assert not slow, slow
    assert {r["kernel"] for r in compiled} >= {*BLOCK_KERNELS, "_weight_grad_kernel",
        "_reduce_partials_kernel", "_adam_kernel"}  # fmt: skip


def test_kernel_report_passes_its_checks(compiled):
    """The CI gate of bench/kernel_report.py --check for Triton, on the same compiles."""
    records = report.collect(compiled, report.HEADLINE) + report.collect(compiled, report.GPU_TESTS)
    fields = {"backend", "kernel", "shape", "dtype", "registers", "spill_bytes", "smem_bytes",
              "mma_issued_flop_per_row", "mma_needed_flop_per_row",
              "global_reduction_bytes_per_row", "vector_reductions", "weight_loads_in_loop",
              "nan_propagating_max", "compile_s", "bound_s_per_128_rows"}  # fmt: skip
    assert all(set(r) == fields for r in records)
    shapes = {(tuple(r["shape"]), r["dtype"]) for r in records}
    for d, w, layers, c, _, precision in report.HEADLINE.values():
        assert ((d, *[w] * layers, c), precision) in shapes
    assert report.violations(records) == []


def test_relus_keep_nan(compiled):
    """T2 at the compile level: every ReLU is PTX max.NaN.f32, and no kernel has a float
    min/max without .NaN: a plain max.f32 would turn a NaN activation into 0 and a diverged
    grade into a finite loss."""
    for row in compiled:
        if row["kernel"] in BLOCK_KERNELS:
            assert row["max_nan"] > 0, (row["id"], row["kernel"])
        assert row["nan_suppressing_minmax"] == 0, (row["id"], row["kernel"])


def test_block_kernels_use_wgmma_and_fit_shared_memory(compiled):
    """Hopper's tensor-core peak needs wgmma: every bf16/tf32 block kernel whose chunks fill a
    warpgroup's 64 rows issues it; and each fits an SM's shared memory."""
    for row in compiled:
        consts = row["constexprs"]
        assert row["smem_bytes"] <= H100_SHARED_BYTES, (row["id"], row["kernel"])
        if row["kernel"] in BLOCK_KERNELS and consts["DOT"] != "ieee" and consts["WC"] >= 64:
            assert row["wgmma"] > 0, (row["id"], row["kernel"])

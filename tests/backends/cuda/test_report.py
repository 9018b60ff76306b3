"""The CUDA kernel report's CI checks (bench/kernel_report_cuda.py, issue 13): no register spills
and no serial global flush chains in a served headline variant, no plan sequence the
shared-memory attribute replay rejects; plus what the report claims about each headline kernel.
Builds the kernels once with nvcc -Xptxas -v (about 30 s on 2 cores) and reads the SASS of the
installed _C."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.cuda_ext


@pytest.fixture(scope="module")
def records(ext, report):
    try:
        return report.records()
    except report.ToolMissing as exc:
        pytest.fail(f"the kernel report cannot run: {exc}")


def by(records, kernel, variant):
    return next(r for r in records if r["kernel"] == kernel and r.get("variant") == variant)


def test_report_has_no_violations(records, report):
    assert report.violations(records) == []


def test_every_kernel_propagates_nan_through_its_float_max(records):
    """relu(NaN) must be NaN (max.NaN.f32, SASS FMNMX.NAN): fmaxf would hide a diverged weight."""
    kernels = [r for r in records if r["kernel"] != "smem_attribute_replay"]
    assert kernels and all(r["nan_propagating_max"] is True for r in kernels)


def test_training_kernels_keep_the_reductions_off_the_critical_path(records):
    for variant in ("grade1", "grade2", "grade1_3hidden", "grade2_3hidden"):
        r = by(records, "block_train_kernel", variant)
        assert r["served"] and r["spill_bytes"] == 0 and r["c7519_warnings"] == 0
        assert r["mma_issued_flop_per_row"] == r["mma_needed_flop_per_row"]
        assert r["vector_reductions"] and r["weight_loads_in_loop"] == 0
    assert by(records, "block_train_kernel", "grade1")["global_reduction_bytes_per_row"] == 0
    assert by(records, "block_train_kernel", "grade2")["global_reduction_bytes_per_row"] == 1024


def test_forward_fits_one_block_per_sm_without_spills(records):
    """One forward block per SM with its next-tile prefetch (the 128-register cap a second
    block needs costs spills at W = 128; block_fwd.cu gives the model)."""
    r = by(records, "block_fwd_kernel", "grade2")
    assert r["spill_bytes"] == 0 and r["blocks_per_sm"] == 1
    assert 2 * (r["smem_bytes"] + 2048) <= 233_472, "shared memory alone would allow two"


def test_replay_record_passes(records):
    replay = by(records, "smem_attribute_replay", "plan_sequences")
    assert replay["sequences"] == ["test_suite", "two_fits"] and replay["failures"] == []

"""The CUDA core's host decisions replayed on the CPU: the shared-memory plans of the papers'
blocks, the choice between them, and the dynamic shared-memory attribute over the plan
sequences of the GPU test suite and of two consecutive fits (issue 13, C1)."""

from __future__ import annotations

import pytest

from . import plan_replay
from .plan_replay import HOPPER_DYNAMIC_SMEM as HOPPER

pytestmark = pytest.mark.cuda_ext


def test_plans_of_the_papers_blocks_on_hopper(ext):
    grade1 = ext.plan(2, 128, 2, 1, True, HOPPER)
    grade2 = ext.plan(128, 128, 2, 1, True, HOPPER)
    denoise = ext.plan(128, 128, 3, 1, True, HOPPER)
    forward = ext.plan(128, 128, 2, 1, False, HOPPER)
    # Grade 1 keeps its one tensor-core layer's dW in shared memory at 8 warps.
    assert (grade1["warps"], grade1["dw_smem_layers"], grade1["alternate"]) == (8, [1], True)
    assert grade1["l2_bytes_per_row"] == 0
    # Grade 2: 8 warps with both dW in L2 moves 1 KiB/row, as 4 warps with one in shared memory.
    assert (grade2["warps"], grade2["dw_smem_layers"], grade2["alternate"]) == (8, [], True)
    four = ext.plan(128, 128, 2, 1, True, HOPPER, warps=4)
    assert (four["warps"], four["dw_smem_layers"]) == (4, [1])
    assert grade2["l2_bytes_per_row"] == four["l2_bytes_per_row"] == 1024
    # Three 128 x 128 layers leave room for a 64-row tile only.
    assert (denoise["warps"], denoise["rows"]) == (4, 64)
    assert denoise["kernel"] == "block_train_kernel<128, 4>"
    assert forward["kernel"] == "block_fwd_kernel<128>"
    for plan in (grade1, grade2, denoise, forward, four):
        assert plan["smem_bytes"] <= HOPPER


def test_plans_name_only_instantiated_kernels(ext):
    for w in ext.WIDTHS:
        for layers in range(1, ext.MAX_HIDDEN + 1):
            for d in (2, w):
                plan = ext.plan(d, w, layers, 1, True, HOPPER)
                if plan is not None:
                    assert plan["kernel"] == f"block_train_kernel<{w}, {plan['warps']}>"
                    assert (w, plan["warps"]) in {(32, 8), (64, 8), (64, 4), (128, 8), (128, 4),
                                                  (256, 4)}  # fmt: skip


def test_plan_refuses_what_does_not_fit(ext):
    assert ext.plan(256, 256, 4, 1, True, HOPPER) is None
    assert ext.plan(2, 128, 2, 1, True, 4096) is None
    assert ext.plan(2, 48, 2, 1, True, HOPPER) is None
    assert ext.plan(2, 32, 1, 1, True, HOPPER)["dw_smem_layers"] == []
    assert ext.plan(2, 32, 8, 1, True, HOPPER, warps=4) is None, "no <32, 4> instantiation"


def test_attribute_decision_only_grows(ext):
    assert ext.smem_attribute(ext.DEFAULT_DYNAMIC_SMEM, 40_000) == 0
    assert ext.smem_attribute(ext.DEFAULT_DYNAMIC_SMEM, 192_080) == 192_080
    assert ext.smem_attribute(192_080, 178_768) == 0
    assert ext.smem_attribute(178_768, 192_080) == 192_080


def test_replay_has_the_sequences_it_claims(ext):
    sequences = plan_replay.sequences(ext)
    suite, fits = sequences["test_suite"], sequences["two_fits"]
    launches = [e for e in suite if e.kind == "launch"]
    assert len(launches) > 3 * len(plan_replay.cases.CASES)
    # Both fits bind grade 1 and grade 2 blocks; the second reuses kernels the first set up.
    assert sum("fit 2 grade 1" in e.what for e in fits) == 4
    assert {e.kernel for e in fits} >= {"block_train_kernel<128, 8>", "block_fwd_kernel<128>"}


def test_replay_accepts_every_sequence(ext):
    """No launch in the GPU test suite or in two fits in one process would exceed its kernel's
    shared-memory attribute under the policy _C runs."""
    for name, events in plan_replay.sequences(ext).items():
        assert plan_replay.replay(events, plan_replay.AttributePolicy(ext)) == [], name


def test_replay_catches_the_fdf00d3_policy(ext):
    """The same sequences under the runtime at fdf00d3 (attribute set to each plan's bytes on a
    cache miss): the replay fails there, so it can fail."""
    suite = plan_replay.replay(plan_replay.suite(ext), plan_replay.Fdf00d3Policy())
    assert any("block_train_kernel" in f for f in suite)
    # A smaller plan of the same kernel lowers the attribute under a larger one made before it.
    events = plan_replay.engine(ext, (2, 128, 2, 1), "big", ["step"])
    events += plan_replay.engine(ext, (2, 128, 1, 1), "small", ["step"])
    events += [e for e in plan_replay.engine(ext, (2, 128, 2, 1), "big again", ["step"])
               if e.kind == "launch"]  # fmt: skip
    old = plan_replay.replay(events, plan_replay.Fdf00d3Policy())
    assert len(old) == 1 and old[0].startswith("big again")
    assert plan_replay.replay(events, plan_replay.AttributePolicy(ext)) == []

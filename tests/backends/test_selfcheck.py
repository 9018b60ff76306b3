"""The self-check auto runs before it trusts a kernel backend: in a child process, at row counts
from the kernel's launch plan, with NaN probes; any failure (wrong numbers, a dropped NaN, an
exception, a dead child) or a bind that raises becomes a fallback to the torch backend with one
reason line; verdicts are kept on disk and reused without a child until ``info --recheck``."""

from __future__ import annotations

import json
import logging

import pytest
import torch

from mgdl_fast import BlockShape, Options, backends
from mgdl_fast.backends import selfcheck, selfcheck_child, verdicts
from mgdl_fast.backends.selfcheck_compare import check_rows

from .fake_kernel import MODE_ENV, FakeKernelBackend

SHAPE = BlockShape(2, 16, 2, 1)


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Auto tries the fake kernel backend first for CPU tensors; a fresh verdict cache."""
    monkeypatch.setitem(backends.BACKEND_CLASSES, "fake", ("tests.backends.fake_kernel",
                                                           "FakeKernelBackend"))  # fmt: skip
    monkeypatch.setattr(backends, "AUTO_ORDER", ("fake", "torch"))
    monkeypatch.setattr(backends, "_logged", set())
    monkeypatch.setattr(selfcheck, "_results", {})
    monkeypatch.delitem(backends._backends, "fake", raising=False)
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    monkeypatch.delenv(selfcheck.SKIP_ENV, raising=False)
    monkeypatch.setenv(verdicts.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(MODE_ENV, "ok")
    return monkeypatch


FP32 = Options("fp32")


def bind(options: Options = FP32):
    return backends.bind(SHAPE, device="cpu", rows=8, options=options)


def test_a_kernel_that_passes_is_used_and_its_verdict_kept(fake):
    engine = bind()
    assert engine.backend == "fake"
    check = engine.self_check["fake"]
    assert check["passed"] and not check["cached"] and check["error"] < 1e-5
    assert check["nan_probe"] == "passed" and check["reason"] is None
    stored = json.loads(verdicts.path().read_text())
    assert stored["format"] == verdicts.FORMAT and len(stored["verdicts"]) == 1


def test_a_cached_verdict_skips_the_child(fake):
    bind()
    fake.setattr(selfcheck, "_results", {})

    def no_child(req):
        raise AssertionError("a cached verdict must not start a child")

    fake.setattr(selfcheck, "run_isolated", no_child)
    engine = bind()
    assert engine.backend == "fake" and engine.self_check["fake"]["cached"] is True


@pytest.mark.parametrize(
    "mode, reason",
    [
        ("wrong", "gradient error 5.000e-01 against the torch backend exceeds 1.0e-04 (fp32)"),
        ("nan", "a NaN weight gave a finite loss"),
        ("stale_adam", "adam error 1.000e+00 against the torch backend exceeds 1.0e-04 (fp32)"),
        ("raise", "raised RuntimeError: injected kernel failure"),
        ("exit", "the self-check process exited with status 3 before giving a verdict"),
        ("signal", "the self-check process was killed by SIGSEGV before giving a verdict"),
    ],
)
def test_a_failing_kernel_falls_back_with_one_reason_line(fake, caplog, mode, reason):
    fake.setenv(MODE_ENV, mode)
    with caplog.at_level(logging.INFO, logger="mgdl_fast"):
        engine = bind()
    assert engine.backend == "torch"
    (line,) = engine.auto_skipped["fake"]
    assert line.startswith(f"self-check failed: {reason}") and "\n" not in line
    assert engine.self_check["fake"]["passed"] is False
    logged = [r.getMessage() for r in caplog.records if "backend fake skipped" in r.getMessage()]
    assert len(logged) == 1 and reason in logged[0]


def test_a_failed_verdict_is_kept_and_recheck_forgets_it(fake):
    fake.setenv(MODE_ENV, "raise")
    assert bind().backend == "torch"
    fake.setenv(MODE_ENV, "ok")
    fake.setattr(selfcheck, "_results", {})
    engine = bind()
    assert engine.backend == "torch" and "--recheck" in engine.auto_skipped["fake"][0]
    assert selfcheck.forget() == 1
    assert bind().backend == "fake"


def test_a_bind_that_raises_after_a_passed_check_falls_back(fake):
    def broken(self, *args):
        raise RuntimeError("cannot plan")

    fake.setattr(FakeKernelBackend, "_bind", broken)
    engine = bind()
    assert engine.backend == "torch"
    assert engine.auto_skipped["fake"] == ["bind raised RuntimeError: cannot plan"]


def test_a_child_that_outlives_its_timeout_fails_for_this_process_only(fake):
    fake.setenv(selfcheck_child.TIMEOUT_ENV, "0.001")
    assert bind().backend == "torch"
    (verdict,) = selfcheck.results().values()
    assert "did not finish in 0.001 s" in verdict["reason"] and verdict["transient"]
    # A slow machine says nothing about the kernel: the next process checks it again.
    assert not verdicts.path().exists() or verdicts.path().read_text().count("passed") == 0
    fake.delenv(selfcheck_child.TIMEOUT_ENV)
    fake.setattr(selfcheck, "_results", {})
    assert bind().backend == "fake"


def test_each_option_set_and_tile_override_gets_its_own_verdict(fake):
    assert bind().backend == "fake"
    assert bind(Options("fp32", deterministic=False)).backend == "fake"
    fake.setenv("MGDL_FAST_TRITON_TILE", "64,4,32")
    assert bind().backend == "fake"
    labels = sorted(selfcheck.results())
    assert len(labels) == 3
    assert [label.endswith("deterministic=False") for label in labels].count(True) == 1
    assert [label.endswith("MGDL_FAST_TRITON_TILE=64,4,32") for label in labels].count(True) == 1
    stored = json.loads(verdicts.path().read_text())["verdicts"].values()
    tiles = [entry["key"]["environment"].get("MGDL_FAST_TRITON_TILE") for entry in stored]
    assert tiles.count(None) == 2 and tiles.count("64,4,32") == 1


def test_a_verdict_file_not_written_by_mgdl_fast_is_left_alone(fake):
    verdicts.path().parent.mkdir(parents=True)
    verdicts.path().write_text('{"mine": true}')
    assert bind().backend == "fake"
    assert verdicts.path().read_text() == '{"mine": true}'
    assert selfcheck.forget() == 0 and verdicts.path().read_text() == '{"mine": true}'


@pytest.mark.parametrize("tile, programs", [(16, 3), (64, 132), (128, 132), (7, 1)])
def test_check_rows_loop_every_program_over_three_tiles_and_match_large_images(tile, programs):
    multi, aligned = check_rows(tile, programs)
    assert multi // (tile * programs) == 3 and multi % tile % 2 == 1
    assert aligned % 16 == 0 and aligned >= 4 * tile * programs


def test_triton_geometry_is_the_planned_training_tile_and_grid():
    why = backends.unavailable_reason("triton")
    if why:
        pytest.skip(why)
    from mgdl_fast.backends.triton import TritonBackend
    from mgdl_fast.backends.triton.engine import TritonEngine

    backend = TritonBackend()
    tile, programs = backend.launch_geometry(SHAPE, torch.device("cpu"), torch.float32,
                                             Options("fp32"))  # fmt: skip
    multi, _ = check_rows(tile, programs)
    engine = TritonEngine(SHAPE, torch.device("cpu"), torch.float32, multi, Options("fp32"),
                          interpret=True)  # fmt: skip
    plan = engine._train_plan(multi)
    assert (engine.train_cfg.block_m, plan.programs) == (tile, programs)
    assert plan.tiles >= 3 * plan.programs


def test_info_recheck_forgets_the_kept_verdicts(fake, capsys):
    from mgdl_fast.cli import main

    bind()
    assert main(["info", "--recheck"]) == 0
    assert "forgot 1 kept self-check verdicts" in capsys.readouterr().out
    assert json.loads(verdicts.path().read_text())["verdicts"] == {}

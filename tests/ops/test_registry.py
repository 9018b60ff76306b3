"""Backend choice: explicit, environment, auto; aliases; every reason for what cannot be
served; the kernels' self-check on auto's first pick, with a deliberately wrong kernel."""

from __future__ import annotations

import pytest
import torch

from mgdl_fast import BackendUnavailableError, BlockShape, InputError, Options, backends
from mgdl_fast.backends import selfcheck

SHAPE = BlockShape(2, 16, 2, 1)


def test_the_torch_backend_serves_everything_and_reference_is_its_alias():
    for name in ("torch", "reference"):
        assert backends.reasons(name, SHAPE, "cpu") == []
        assert backends.bind(SHAPE, device="cpu", rows=4, backend=name).backend == "torch"


def test_auto_picks_torch_for_cpu_tensors(monkeypatch):
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    engine = backends.bind(SHAPE, device="cpu", rows=4)
    assert engine.backend == "torch"
    assert "auto does not pick triton for cpu tensors" in engine.auto_skipped.get("triton", [""])[0]


def test_environment_variable_selects_the_backend(monkeypatch):
    monkeypatch.setenv(backends.ENV_VAR, "reference")
    assert backends.bind(SHAPE, device="cpu", rows=4).backend == "torch"
    monkeypatch.setenv(backends.ENV_VAR, "no-such-backend")
    with pytest.raises(InputError, match="unknown backend 'no-such-backend'"):
        backends.bind(SHAPE, device="cpu", rows=4)


def test_an_explicit_backend_that_cannot_serve_raises_with_reasons(monkeypatch):
    monkeypatch.setitem(backends._import_errors, "cuda", "cannot import mgdl_fast._C: test")
    monkeypatch.delitem(backends._backends, "cuda", raising=False)
    with pytest.raises(BackendUnavailableError, match="backend 'cuda' cannot serve") as info:
        backends.bind(SHAPE, device="cpu", rows=4, backend="cuda")
    assert info.value.reasons == ["cannot import mgdl_fast._C: test"]


def test_options_come_from_the_environment_once(monkeypatch):
    monkeypatch.setenv("MGDL_FAST_PRECISION", "bf16")
    monkeypatch.setenv("MGDL_FAST_DETERMINISTIC", "0")
    assert Options.from_env() == Options("bf16", False)
    assert Options.from_env("fp32", True) == Options("fp32", True)
    monkeypatch.setenv("MGDL_FAST_DETERMINISTIC", "maybe")
    with pytest.raises(InputError, match="MGDL_FAST_DETERMINISTIC must be 0 or 1"):
        Options.from_env()
    with pytest.raises(InputError, match="precision must be one of"):
        Options("fp16")


def test_a_precision_a_backend_lacks_is_a_reason():
    why = backends.reasons("torch", SHAPE, "cpu", torch.float32, Options("tf32"))
    assert why == ["precision tf32 is not one of fp32, bf16"]


@pytest.fixture
def triton_for_cpu(monkeypatch, tmp_path):
    """Let auto consider the Triton interpreter for CPU tensors (as it would for CUDA ones)."""
    why = backends.unavailable_reason("triton")
    if why:
        pytest.skip(why)
    backend = backends.get_backend("triton")
    caps = backend.capabilities
    monkeypatch.setattr(
        type(backend), "capabilities",
        property(lambda self: type(caps)(**{**vars(caps), "auto_device_types": ("cpu",)})),
    )  # fmt: skip
    monkeypatch.setattr(selfcheck, "_results", {})
    monkeypatch.setattr(backends, "_logged", set())
    monkeypatch.delenv(backends.ENV_VAR, raising=False)
    monkeypatch.delenv(selfcheck.SKIP_ENV, raising=False)
    monkeypatch.setenv("MGDL_FAST_CACHE_DIR", str(tmp_path))
    return backend


def test_auto_uses_a_kernel_that_passes_its_self_check(triton_for_cpu):
    """The real Triton kernels, checked in a child process (interpreted); failures of every
    kind are tested with a fake kernel in tests/backends/test_selfcheck.py."""
    engine = backends.bind(SHAPE, device="cpu", rows=8, options=Options("fp32"))
    assert engine.backend == "triton"
    check = engine.self_check["triton"]
    assert check["passed"] and check["error"] < 1e-5 and check["worst"] in check["errors"]
    assert check["nan_probe"] == "passed" and min(check["rows"]) > 3 * 16 * 3


def test_the_self_check_can_be_skipped(triton_for_cpu, monkeypatch):
    monkeypatch.setenv(selfcheck.SKIP_ENV, "1")
    engine = backends.bind(SHAPE, device="cpu", rows=8, options=Options("fp32"))
    assert engine.backend == "triton" and engine.self_check is None

"""The CUDA extension on any machine: it builds, imports, exposes every entry point, plans its
shared memory, compiles to the expected tensor-core instructions, and fails with clear Python
exceptions where no GPU is present. The numerics run in test_ops.py on a GPU."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from mgdl_fast import BackendUnavailableError, BlockShape, Options, backends
from mgdl_fast.backends.cuda import HOPPER_DYNAMIC_SMEM, CudaBackend

from .cases import no_gpu_only

pytestmark = pytest.mark.cuda_ext

ENTRY_POINTS = (
    "device_count",
    "runtime_version",
    "required_driver_branch",
    "max_smem_optin",
    "num_params",
    "param_offsets",
    "check_dims",
    "plan",
    "device_plan",
    "smem_attribute",
    "Plan",
    "block_fwd",
    "block_train",
    "adam_step",
    "gd_step",
)


def test_extension_exposes_every_entry_point(ext):
    assert [name for name in ENTRY_POINTS if not callable(getattr(ext, name, None))] == []
    assert issubclass(ext.CudaError, RuntimeError)
    assert ext.runtime_version() >= 12000
    assert ext.WIDTHS == (32, 64, 128, 256) and ext.MAX_HIDDEN == 8
    assert (ext.MAX_SMALL_IN, ext.MAX_OUT, ext.DEFAULT_DYNAMIC_SMEM) == (3, 4, 48 * 1024)


def test_importing_the_package_never_loads_the_extension():
    code = "import sys, mgdl_fast, mgdl_fast.backends.cuda; print('mgdl_fast._C' in sys.modules)"
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.strip() == "False"


@pytest.mark.parametrize(
    "dims", [(2, 128, 2, 1), (3, 32, 1, 3), (128, 128, 3, 1), (256, 256, 1, 4), (1, 64, 8, 2)]
)
def test_flat_layout_matches_block_shape(ext, dims):
    shape = BlockShape(*dims)
    assert [tuple(o) for o in ext.param_offsets(*dims)] == list(shape.offsets)
    assert ext.num_params(*dims) == shape.num_params


def test_check_dims_names_each_problem(ext):
    assert ext.check_dims(10, 2, 128, 2, 1) is None
    assert ext.check_dims(10, 128, 128, 8, 4) is None
    assert "N must be" in ext.check_dims(0, 2, 128, 2, 1)
    assert "width" in ext.check_dims(10, 2, 48, 2, 1)
    assert "input dim" in ext.check_dims(10, 5, 128, 2, 1)
    assert "output channels" in ext.check_dims(10, 2, 128, 2, 5)
    assert "hidden layers" in ext.check_dims(10, 2, 128, 9, 1)


def test_the_driver_each_runtime_needs(ext):
    assert ext.required_driver_branch(13000) == 580
    assert ext.required_driver_branch(12040) == 525
    assert ext.required_driver_branch(ext.runtime_version()) >= 525


@no_gpu_only
def test_calls_without_a_gpu_raise_cuda_error_naming_the_driver(ext):
    with pytest.raises(ext.CudaError, match="cudaGetDeviceCount") as info:
        ext.device_count()
    assert "driver" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ext.CudaError, match="cudaSetDevice"):
        ext.Plan(device=0, rows=10, d=2, w=128, l=2, c=1, train=True)
    with pytest.raises(ext.CudaError, match="cudaSetDevice"):
        ext.gd_step(device=0, stream=0, params=256, grad=512, n=10, lr=0.1)


def test_plans_refuse_bad_sizes_before_any_cuda_call(ext):
    with pytest.raises(ValueError, match="width must be"):
        ext.Plan(device=0, rows=10, d=2, w=48, l=2, c=1, train=True)
    with pytest.raises(ValueError, match="hidden layers"):
        ext.Plan(device=0, rows=10, d=2, w=128, l=9, c=1, train=False)
    with pytest.raises(ValueError, match="warps must be"):
        ext.device_plan(0, 2, 128, 2, 1, True, warps=6)


@no_gpu_only
def test_unavailable_reason_is_one_line_about_the_driver():
    why = backends.unavailable_reason("cuda")
    assert why is not None and "\n" not in why
    assert "driver" in why or "device" in why or "not built" in why


def test_unavailable_reason_names_a_missing_extension(monkeypatch):
    from mgdl_fast.backends import cuda

    monkeypatch.setattr(cuda, "extension", lambda: ImportError("No module named 'mgdl_fast._C'"))
    backend = CudaBackend()
    assert "mgdl_fast._C is not built" in backend.unavailable_reason()


def test_unsupported_reasons_list_every_problem(ext):
    reasons = " | ".join(
        CudaBackend().not_supported_reasons(
            BlockShape(5, 48, 9, 6), torch.device("cpu"), torch.float16, Options("tf32")
        )
    )
    for part in (
        "runs on cuda tensors, not cpu",
        "input dtype float16",
        "width 48 is not one of 32, 64, 128, 256",
        "9 hidden layers (at most 8)",
        "input dim 5 is neither 1-3 nor the width 48",
        "6 output channels (at most 4)",
        "precision tf32 is not one of bf16",
    ):
        assert part in reasons


def test_blocks_too_big_for_shared_memory_are_refused(ext):
    # Five 128 x 128 layers' weights fit for the forward pass but not with the training tiles.
    why = CudaBackend().not_supported_reasons(
        BlockShape(128, 128, 5, 1), torch.device("cpu"), torch.bfloat16, Options()
    )
    assert any(f"H100/H200 ({HOPPER_DYNAMIC_SMEM} bytes)" in r for r in why)
    assert ext.plan(128, 128, 5, 1, False, HOPPER_DYNAMIC_SMEM) is not None


def test_explicit_cuda_backend_raises_with_reasons():
    with pytest.raises(BackendUnavailableError, match="backend 'cuda' cannot serve"):
        backends.bind(BlockShape(2, 32, 1, 1), device="cpu", rows=4, backend="cuda")


@pytest.mark.slow
def test_kernels_compile_to_tensor_core_instructions(ext, sass):
    hopper, ampere = sass(ext, "sm_90a"), sass(ext, "sm_80")
    for kernel in ("block_fwd_kernel", "block_train_kernel", "reduce_partials_kernel"):
        assert kernel in hopper and kernel in ampere
    # sm_90a: warpgroup MMAs with A from registers, transposed shared-memory operands for the
    # input and weight gradients, vector L2 reductions; mma.sync only for the W = 32 dW.
    assert "HGMMA.64x64x16.F32.BF16" in hopper and ".tnspA.tnspB" in hopper
    assert "REDG.E.ADD.F32x2" in hopper
    assert "HGMMA" not in ampere and "HMMA.16816.F32.BF16" in ampere
    assert "LDSM.16.MT88.4" in ampere, "ldmatrix.trans feeds the backward products"

"""One full-batch training epoch (grade_step + adam_step) per provider and shape.

Providers: ``eager`` (the reference ops), ``compile`` (torch.compile of the block function,
its gradient and Adam) and every kernel backend of the dispatcher (``triton``, ``cuda``, ...),
skipped with the dispatcher's reasons where it cannot serve the inputs. Correctness is asserted
once against a float64 reference step before timing; the timed function synchronizes the
device. Run on a GPU with ``bench/run_gpu.sh`` (JSON into bench/results/); without a GPU,
``python -m pytest bench/bench_epoch.py --benchmark-disable`` is a smoke test at tiny sizes.
"""

from __future__ import annotations

import os
import platform
import subprocess

import pytest
import torch

from mgdl_fast import BlockParams, BlockShape, dispatch, reference

from .shapes import EpochShape, epoch_shapes

GPU = torch.cuda.is_available()
DEVICE = "cuda" if GPU else "cpu"
KERNEL_BACKENDS = [name for name in dispatch.backend_names() if name != "reference"]
PROVIDERS = ["eager", "compile", *KERNEL_BACKENDS]
LR = 1e-3


def inputs(shape: EpochShape):
    """Params, inputs and targets as a grade sees them: fp32 coordinates for grade 1, cached
    ReLU features (bf16 on a GPU) for later grades."""
    params = BlockParams.init(
        BlockShape(shape.in_dim, shape.width, shape.layers, shape.out_dim), seed=0, device=DEVICE
    )
    gen = torch.Generator(device=DEVICE).manual_seed(1)
    if shape.grade == "g1":
        x = torch.rand(shape.n, shape.in_dim, generator=gen, device=DEVICE)
    else:
        x = torch.relu(torch.randn(shape.n, shape.in_dim, generator=gen, device=DEVICE))
        x = x.to(torch.bfloat16 if GPU else torch.float32)
    y = torch.rand(shape.n, shape.out_dim, generator=gen, device=DEVICE)
    return params, x, y


class OpsEpoch:
    """An epoch through a backend's ops: ``grade_step`` then ``adam_step``, state kept here."""

    def __init__(self, backend: str, params: BlockParams, x, y):
        self.params, self.x, self.y = params, x, y
        _, self.step_op = dispatch.resolve("grade_step", x, params, backend=backend)
        _, self.adam_op = dispatch.resolve("adam_step", params.flat, params, backend=backend)
        self.grad = params.zeros_like()
        self.m, self.v = torch.zeros_like(params.flat), torch.zeros_like(params.flat)
        self.step = 0

    def __call__(self) -> torch.Tensor:
        self.step += 1
        loss = self.step_op(self.x, self.y, self.params, grad_params=self.grad)
        self.adam_op(self.params.flat, self.grad.flat, self.m, self.v, step=self.step, lr=LR)
        return loss


class CompiledEpoch:
    """torch.compile of the block function's loss, its gradient and the Adam update; the
    step-dependent scalars are tensors so that no epoch recompiles."""

    def __init__(self, params: BlockParams, x, y, beta1=0.9, beta2=0.999, eps=1e-8):
        shape = params.shape
        self.params, self.x, self.y = params, x, y
        self.m, self.v = torch.zeros_like(params.flat), torch.zeros_like(params.flat)
        self.step = 0

        def loss_fn(flat, xx, yy):
            return 0.5 * torch.mean((reference.block_apply(flat, xx, shape) - yy) ** 2)

        grad_and_loss = torch.func.grad_and_value(loss_fn)

        def epoch(flat, m, v, xx, yy, step_size, bias_correction2):
            grad, loss = grad_and_loss(flat, xx, yy)
            m.lerp_(grad, 1.0 - beta1)
            v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
            flat.sub_(step_size * m / ((v / bias_correction2).sqrt() + eps))
            return loss, grad

        self.epoch = torch.compile(epoch)
        self.beta1, self.beta2 = beta1, beta2
        self.grad = None

    def __call__(self) -> torch.Tensor:
        self.step += 1
        step_size = torch.tensor(LR / (1 - self.beta1**self.step), device=self.x.device)
        bc2 = torch.tensor(1 - self.beta2**self.step, device=self.x.device)
        loss, grad = self.epoch(self.params.flat, self.m, self.v, self.x, self.y, step_size, bc2)
        self.grad = BlockParams(self.params.shape, grad)
        return loss


def make_epoch(provider: str, params: BlockParams, x, y):
    if provider == "eager":
        return OpsEpoch("reference", params, x, y)
    if provider == "compile":
        return CompiledEpoch(params, x, y)
    why = dispatch.reasons(provider, "grade_step", x, params)
    why += dispatch.reasons(provider, "adam_step", params.flat, params)
    if why:
        pytest.skip(f"{provider}: " + "; ".join(dict.fromkeys(why)))
    return OpsEpoch(provider, params, x, y)


def check_first_step(epoch, params: BlockParams, x, y) -> None:
    """The provider's first loss and gradient against the reference in float64: relative L2
    error within what tf32/bf16 products allow on a GPU, 1e-4 in the fp32 CPU smoke run."""
    p64 = BlockParams(params.shape, params.flat.double())
    grad64 = p64.zeros_like()
    loss64 = reference.grade_step(x.double(), y.double(), p64, grad_params=grad64)
    loss = epoch()
    tol = 3e-2 if GPU else 1e-4
    err = (epoch.grad.flat.double() - grad64.flat).norm() / grad64.flat.norm()
    assert err.item() <= tol, f"gradient relative error {err.item():.2e} > {tol}"
    assert abs(loss.item() - loss64.item()) <= tol * loss64.item()


def machine_info() -> dict:
    info = {"device": torch.cuda.get_device_name() if GPU else platform.processor() or "cpu"}
    info["torch"] = torch.__version__
    try:
        import triton

        info["triton"] = triton.__version__
    except ImportError:
        info["triton"] = None
    info["commit"] = os.environ.get("MGDL_FAST_COMMIT") or _git_commit()
    return info


def _git_commit() -> str:
    try:
        run = ["git", "describe", "--always", "--dirty"]
        return subprocess.run(run, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@pytest.mark.parametrize("shape", epoch_shapes(GPU), ids=str)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_epoch(benchmark, provider: str, shape: EpochShape):
    params, x, y = inputs(shape)
    epoch = make_epoch(provider, params.clone(), x, y)
    check_first_step(epoch, params, x, y)
    # Warm-up: compiles (Triton JIT, torch.compile) and allocator growth stay untimed.
    for _ in range(3 if GPU else 0):
        epoch()

    def run():
        epoch()
        if GPU:
            torch.cuda.synchronize()

    benchmark.extra_info.update(machine_info())
    benchmark.extra_info.update(
        provider=provider, shape=str(shape), n=shape.n, in_dim=shape.in_dim, width=shape.width,
        layers=shape.layers, x_dtype=str(x.dtype).replace("torch.", ""),
        roofline_pixels_per_s=shape.roofline_pixels_per_s(),
    )  # fmt: skip
    benchmark(run)
    if benchmark.stats is not None:
        median = benchmark.stats.stats.median
        benchmark.extra_info["pixels_per_s"] = shape.n / median
        benchmark.extra_info["pct_bf16_roofline"] = (
            100 * shape.n / median / shape.roofline_pixels_per_s()
        )

"""One full-batch training epoch (0.5 * MSE step + Adam update) per provider and shape.

Providers: every backend of the engine (``cuda``, ``triton``, ``torch``: a bound engine's
``step`` + ``update`` at its default precision, bf16 for the torch backend on a GPU), skipped
with the backend's reasons where it cannot serve the shape; the torch baselines a user would
write, ``eager`` (autograd through the block and ``torch.optim.Adam``) and ``compile``
(torch.compile of the loss, its gradient and Adam), each also as ``-bf16`` under bf16 autocast:
the honest baselines for bf16 kernels. On a GPU each backend also runs as ``<backend>-graph``:
ten epochs captured once in a CUDA graph and replayed (what the trainer does between records),
timed per epoch. Providers run in order of value (kernels first, torch.compile last).
Correctness is asserted once against a float64 step before timing; the timed function
synchronizes the device. Every case appends one record the moment it is measured
(bench/records.py); bench/epoch_summary.py states each provider against the best torch
provider of the same run. Run on a GPU with ``bench/gpu_suite.sh``; on CPU, CI runs it as a
smoke test at tiny sizes.
"""

from __future__ import annotations

import pytest
import torch

from mgdl_fast import BlockParams, BlockShape, Options, backends
from mgdl_fast.io.environment import environment
from mgdl_fast.spec import block_apply

from .records import append
from .shapes import EpochShape, epoch_shapes

GPU = torch.cuda.is_available()
DEVICE = torch.device("cuda" if GPU else "cpu")
GRAPH_EPOCHS = 10
# (N, D) of the one GPU shape torch.compile is timed at: grade >= 2 at 1024^2.
COMPILE_SHAPE = (1024 * 1024, 128)
GRAPHS = [f"{name}-graph" for name in ("cuda", "triton", "torch")] if GPU else []
PROVIDERS = ["cuda", "triton", "torch", "eager-bf16", *GRAPHS, "eager", "compile-bf16", "compile"]
LR = 1e-3


def shape_key(params: BlockParams, x: torch.Tensor) -> tuple[int, int]:
    return (x.shape[0], params.shape.in_dim)


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


class EngineEpoch:
    """An epoch through a bound engine: ``step`` then ``update``, state kept here."""

    def __init__(self, backend: str, params: BlockParams, x, y):
        self.params, self.x, self.y = params, x, y
        self.engine = backends.bind(
            params.shape, device=DEVICE, rows=x.shape[0], input_dtype=x.dtype, backend=backend
        )
        self.engine.validate(x, params.flat, targets=y)
        self.grad = params.zeros_like()
        self.state = self.engine.optimizer_state("adam", LR, params.flat.numel())

    def __call__(self) -> torch.Tensor:
        loss = self.engine.step(self.x, self.y, self.params.flat, self.grad.flat)
        self.engine.update(self.params.flat, self.grad.flat, self.state)
        return loss


class GraphEpochs(EngineEpoch):
    """``GRAPH_EPOCHS`` engine epochs captured in one CUDA graph; a call replays them."""

    def __init__(self, backend: str, params: BlockParams, x, y):
        super().__init__(backend, params, x, y)
        super().__call__()  # the first epoch eagerly (lazy initialisation must not be captured)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            for _ in range(GRAPH_EPOCHS):
                self.loss = super().__call__()

    def __call__(self) -> torch.Tensor:
        self.graph.replay()
        return self.loss


def autocast(enabled: bool):
    """bf16 autocast on the benchmark's device (matmuls in bf16, fp32 accumulation)."""
    return torch.autocast(DEVICE.type, dtype=torch.bfloat16, enabled=enabled)


class EagerEpoch:
    """Plain PyTorch: autograd through the block function and torch.optim.Adam, under bf16
    autocast when ``bf16``."""

    def __init__(self, params: BlockParams, x, y, bf16: bool = False):
        self.shape, self.x, self.y = params.shape, x.float(), y
        self.flat = params.flat.detach().clone().requires_grad_(True)
        self.opt = torch.optim.Adam([self.flat], lr=LR)
        self.grad = None
        self.bf16 = bf16

    def __call__(self) -> torch.Tensor:
        self.opt.zero_grad(set_to_none=False)
        with autocast(self.bf16):
            pred = block_apply(self.flat, self.x, self.shape)
        loss = 0.5 * torch.mean((pred.float() - self.y) ** 2)
        loss.backward()
        self.grad = BlockParams(self.shape, self.flat.grad)
        self.opt.step()
        return loss.detach()


class CompiledEpoch:
    """torch.compile of the block function's loss, its gradient and the Adam update (the block
    under bf16 autocast when ``bf16``); the step-dependent scalars are tensors so that no epoch
    recompiles."""

    def __init__(self, params: BlockParams, x, y, bf16=False, beta1=0.9, beta2=0.999, eps=1e-8):
        shape = params.shape
        self.params, self.x, self.y = params, x, y
        self.m, self.v = torch.zeros_like(params.flat), torch.zeros_like(params.flat)
        self.step = 0

        def loss_fn(flat, xx, yy):
            with autocast(bf16):
                pred = block_apply(flat, xx, shape)
            return 0.5 * torch.mean((pred.float() - yy) ** 2)

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
    base, bf16 = provider.removesuffix("-bf16"), provider.endswith("-bf16")
    if base == "compile" and GPU and shape_key(params, x) != COMPILE_SHAPE:
        pytest.skip("torch.compile is timed at one shape (its first call compiles for ~30 s)")
    if base == "eager":
        return EagerEpoch(params, x, y, bf16)
    if base == "compile":
        return CompiledEpoch(params, x, y, bf16)
    name = provider.removesuffix("-graph")
    why = backends.reasons(name, params.shape, DEVICE, x.dtype, Options.from_env())
    if why:
        pytest.skip(f"{name}: " + "; ".join(why))
    return (
        GraphEpochs(name, params, x, y)
        if provider.endswith("-graph")
        else EngineEpoch(name, params, x, y)
    )


def check_first_step(provider: str, params: BlockParams, x, y) -> None:
    """The provider's first loss and gradient against a float64 step: relative L2 error
    within what tf32/bf16 products allow (on a GPU, or the bf16 CPU path), 1e-4 in fp32."""
    flat64 = params.flat.detach().double().requires_grad_(True)
    loss64 = 0.5 * torch.mean((block_apply(flat64, x.double(), params.shape) - y.double()) ** 2)
    (grad64,) = torch.autograd.grad(loss64, flat64)
    epoch = make_epoch(provider.removesuffix("-graph"), params.clone(), x, y)
    loss = epoch()
    engine = getattr(epoch, "engine", None)
    fp32 = engine.options.precision == "fp32" if engine else not provider.endswith("-bf16")
    exact = not GPU and fp32
    tol = 1e-4 if exact else 3e-2
    err = (epoch.grad.flat.double() - grad64).norm() / grad64.norm()
    assert err.item() <= tol, f"gradient relative error {err.item():.2e} > {tol}"
    assert abs(loss.item() - loss64.item()) <= tol * loss64.item()


@pytest.mark.parametrize("shape", epoch_shapes(GPU), ids=str)
@pytest.mark.parametrize("provider", PROVIDERS)
def test_epoch(benchmark, provider: str, shape: EpochShape):
    params, x, y = inputs(shape)
    epoch = make_epoch(provider, params.clone(), x, y)
    check_first_step(provider, params, x, y)
    # Warm-up: compiles (Triton JIT, torch.compile) and allocator growth stay untimed.
    for _ in range(3 if GPU else 0):
        epoch()

    def run():
        epoch()
        if GPU:
            torch.cuda.synchronize()

    epochs_per_call = GRAPH_EPOCHS if provider.endswith("-graph") else 1
    benchmark.extra_info.update(environment(DEVICE))
    benchmark.extra_info.update(
        provider=provider, shape=str(shape), n=shape.n, in_dim=shape.in_dim, width=shape.width,
        layers=shape.layers, x_dtype=str(x.dtype).replace("torch.", ""),
        epochs_per_call=epochs_per_call, roofline_pixels_per_s=shape.roofline_pixels_per_s(),
    )  # fmt: skip
    engine = getattr(epoch, "engine", None)
    benchmark.extra_info["precision"] = (
        engine.options.precision if engine else "bf16" if provider.endswith("-bf16") else "fp32"
    )
    benchmark(run)
    if benchmark.stats is not None:
        per_epoch = benchmark.stats.stats.median / epochs_per_call
        benchmark.extra_info["s_per_epoch"] = per_epoch
        benchmark.extra_info["pixels_per_s"] = shape.n / per_epoch
        benchmark.extra_info["pct_bf16_roofline"] = (
            100 * shape.n / per_epoch / shape.roofline_pixels_per_s()
        )
        benchmark.extra_info["rounds"] = benchmark.stats.stats.rounds
    append({"case": f"{provider}[{shape}]", **benchmark.extra_info})

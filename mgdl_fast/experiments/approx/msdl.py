"""Multi-scale deep learning (MSDL, PROTOCOL 6): the comparator of MGDL in paper 1, Sec. 7.

``S`` subnets of the same shape read the input multiplied by ``coeffs`` ({1, 2, 4, 8}); the
prediction is the sum of their outputs; all are trained together, end to end, on
``0.5 * mean((f - y)^2)``. Each subnet is a block of the engine, so its forward and backward go
through the dispatcher like a grade's. The authors' subnets are ``[1, 8, 8, 8, 8, 1]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .block import BlockParams, BlockShape
from .config import TrainConfig
from .dispatch import resolve
from .early_stop import ValidationSmoothing
from .errors import DivergenceError
from .history import GradeRecord, MetricLog
from .optim import GradeOptimizer


@dataclass(frozen=True)
class MSDLConfig:
    """``len(coeffs)`` subnets of ``layers`` hidden ReLU layers of ``width``."""

    width: int = 8
    layers: int = 4
    coeffs: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)

    def shape(self, in_dim: int, out_dim: int) -> BlockShape:
        return BlockShape(in_dim, self.width, self.layers, out_dim)


class MSDLModel:
    """The subnets' parameters and their input scales."""

    def __init__(self, blocks: list[BlockParams], coeffs: tuple[float, ...]):
        self.blocks, self.coeffs = blocks, tuple(coeffs)

    @property
    def num_params(self) -> int:
        return sum(b.shape.num_params for b in self.blocks)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, *, backend: str | None = None) -> torch.Tensor:
        """``sum_s subnet_s(c_s x)`` ``[N, C]`` for ``x [N, D]``."""
        out = None
        for block, c in zip(self.blocks, self.coeffs):
            _, fwd = resolve("block_fwd", x, block, backend=backend)
            y = fwd(c * x, block)
            out = y if out is None else out + y
        return out


def _loss(model: MSDLModel, x: torch.Tensor, y: torch.Tensor, backend) -> torch.Tensor:
    diff = model.predict(x, backend=backend).double() - y.double()
    return 0.5 * torch.mean(diff * diff)


def _step(model, scaled, y, grads, fwd, bwd) -> torch.Tensor:
    """Loss and gradients of every subnet (written into ``grads``) for one full-batch step."""
    out = sum(f(xs, b) for f, xs, b in zip(fwd, scaled, model.blocks))
    diff = out - y
    loss = 0.5 * torch.mean(diff * diff)
    grad_out = diff / y.numel()
    for f, xs, block, grad in zip(bwd, scaled, model.blocks, grads):
        f(xs, block, grad_out, grad_params=grad)
    return loss


def fit_msdl(
    task, cfg: MSDLConfig, train_cfg: TrainConfig, *, progress: bool = False
) -> tuple[MSDLModel, GradeRecord]:
    """Train an MSDL model on a FunctionTask's train split, recording train/val/test losses
    every ``record_every`` epochs, with the papers' validation-smoothing early stop.
    Raises DivergenceError when a recorded training loss is not finite."""
    device = train_cfg.torch_device()
    shape = cfg.shape(task.in_dim, task.out_dim)
    # One seed per subnet, so the subnets start different (the authors split one key).
    blocks = [
        BlockParams.init(shape, seed=train_cfg.seed + s, device=device, scheme=train_cfg.init)
        for s in range(len(cfg.coeffs))
    ]
    model = MSDLModel(blocks, cfg.coeffs)
    start = time.perf_counter()
    log, steps, reason = _train(model, task, train_cfg, progress)
    final = {
        f"{name}_loss": _loss(model, s.x, s.y, train_cfg.backend).item()
        for name, s in task.splits.items()
    }
    record = GradeRecord(
        grade=1,
        shape={**shape.to_dict(), "subnets": len(blocks), "coeffs": list(cfg.coeffs)},
        epochs_run=steps,
        stop_reason=reason,
        time_s=time.perf_counter() - start,
        curves={name: {"epoch": e, "value": v} for name, (e, v) in log.series.items()},
        final=final,
    )
    return model, record


def _train(model: MSDLModel, task, train_cfg: TrainConfig, progress: bool):
    """The full-batch loop; returns (log, steps taken, stop reason)."""
    x, y, backend = task.splits["train"].x, task.splits["train"].y, train_cfg.backend
    blocks = model.blocks
    scaled = [c * x for c in model.coeffs]
    fwd = [resolve("block_fwd", xs, b, backend=backend)[1] for xs, b in zip(scaled, blocks)]
    bwd = [resolve("block_bwd", xs, b, backend=backend)[1] for xs, b in zip(scaled, blocks)]
    optims = [GradeOptimizer(train_cfg.optimizer, train_cfg.lr, b, backend=backend) for b in blocks]
    grads = [b.zeros_like() for b in blocks]
    rule = ValidationSmoothing(train_cfg.record_every, train_cfg.smooth_window, train_cfg.rel_tol)
    log, reason, steps = MetricLog(), "max_epochs", 0
    for epoch in tqdm(range(train_cfg.epochs), desc="msdl", disable=None if progress else True):
        _step(model, scaled, y, grads, fwd, bwd)
        for optim, block, grad in zip(optims, blocks, grads):
            optim.step(block, grad)
        steps += 1
        if epoch % train_cfg.record_every == 0:
            for name, split in task.splits.items():
                log.add(f"{name}_loss", epoch, _loss(model, split.x, split.y, backend))
        check = rule.is_check_epoch(epoch)
        if check or epoch == train_cfg.epochs - 1:
            log.flush()
            _raise_if_diverged(log)
            if check and train_cfg.early_stopping and rule.should_stop(log.values("val_loss")):
                reason = "early_stopping"
                break
    log.flush()
    return log, steps, reason


def _raise_if_diverged(log: MetricLog) -> None:
    values = log.values("train_loss")
    if values and not torch.isfinite(torch.tensor(values[-1])):
        raise DivergenceError(1, log.series["train_loss"][0][-1], values[-1])

"""Multi-scale deep learning (MSDL, PROTOCOL 6): the comparator of MGDL in paper 1, Sec. 7.

``S`` subnets of the same shape read the input multiplied by ``coeffs`` ({1, 2, 4, 8}); the
prediction is the sum of their outputs; all are trained together, end to end, on
``0.5 * mean((f - y)^2)``. The subnets' parameters are one flat vector (``StackedParams``), so
the MSDL model trains in the same loop as a grade (``train.loop.run_grade``), with one bound
engine serving every subnet and one optimizer over the whole vector (Adam and GD are
elementwise, so this equals one optimizer per subnet). The authors' subnets are
``[1, 8, 8, 8, 8, 1]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ...backends import bind
from ...block import BlockParams, BlockShape
from ...errors import DivergenceError
from ...train.config import TrainConfig, per_grade
from ...train.early_stop import ValidationSmoothing
from ...train.features import FeatureCache
from ...train.history import GradeRecord
from ...train.loop import GradeSetup, run_grade
from ...train.optim import GradeOptimizer
from ...train.progress import Progress


@dataclass(frozen=True)
class MSDLConfig:
    """``len(coeffs)`` subnets of ``layers`` hidden ReLU layers of ``width``."""

    width: int = 8
    layers: int = 4
    coeffs: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0)

    def shape(self, in_dim: int, out_dim: int) -> BlockShape:
        return BlockShape(in_dim, self.width, self.layers, out_dim)


class StackedParams:
    """``count`` blocks of one ``shape`` in one flat vector ``[count * P]``; ``blocks`` are
    BlockParams views into it."""

    def __init__(self, shape: BlockShape, count: int, flat: torch.Tensor):
        self.shape, self.count, self.flat = shape, count, flat
        p = shape.num_params
        self.blocks = [BlockParams(shape, flat[s * p : (s + 1) * p]) for s in range(count)]

    def zeros_like(self) -> StackedParams:
        return StackedParams(self.shape, self.count, torch.zeros_like(self.flat))


class MSDLModel:
    """The subnets' parameters and their input scales."""

    def __init__(self, params: StackedParams, coeffs: tuple[float, ...]):
        self.params, self.coeffs = params, tuple(coeffs)

    @property
    def blocks(self) -> list[BlockParams]:
        return self.params.blocks

    @property
    def num_params(self) -> int:
        return self.params.flat.numel()

    @torch.no_grad()
    def predict(self, x: torch.Tensor, *, backend: str | None = None, engine=None) -> torch.Tensor:
        """``sum_s subnet_s(c_s x)`` ``[N, C]`` for ``x [N, D]``."""
        shape = self.params.shape
        engine = engine or bind(shape, device=x.device, rows=x.shape[0], backend=backend)
        out = torch.empty(x.shape[0], shape.out_dim, device=x.device)
        total = torch.zeros_like(out)
        for block, c in zip(self.blocks, self.coeffs):
            engine.forward(c * x, block.flat, out)
            total += out
        return total


class MSDLObjective:
    """``0.5 * mean((sum_s subnet_s(c_s x) - y)^2)`` on the train split; every split's loss at
    record epochs (a ``tasks.base.Objective`` over StackedParams)."""

    ops = ("forward", "backward")
    capturable = False

    def __init__(self, task, model: MSDLModel):
        self.task, self.model = task, model
        self.splits = tuple(task.splits)

    def start_grade(self, engine, inputs, params: StackedParams) -> None:
        x = inputs.get("train")
        engine.validate(x, params.blocks[0].flat, targets=self.task.splits["train"].y)
        self._engine = engine
        self._scaled = [c * x for c in self.model.coeffs]
        self._outs = [
            torch.empty(x.shape[0], params.shape.out_dim, device=x.device) for _ in params.blocks
        ]

    def step(self, inputs, params: StackedParams, grad: StackedParams) -> torch.Tensor:
        """Loss and gradients of every subnet (into ``grad``) for one full-batch step."""
        y = self.task.splits["train"].y
        for xs, block, out in zip(self._scaled, params.blocks, self._outs):
            self._engine.forward(xs, block.flat, out)
        diff = sum(self._outs) - y
        loss = 0.5 * torch.mean(diff * diff)
        grad_out = diff / y.numel()
        for xs, block, g in zip(self._scaled, params.blocks, grad.blocks):
            self._engine.backward(xs, block.flat, grad_out, g.flat)
        return loss

    def _loss(self, split: str) -> torch.Tensor:
        s = self.task.splits[split]
        diff = self.model.predict(s.x, engine=self._engine).double() - s.y.double()
        return 0.5 * torch.mean(diff * diff)

    def record(self, inputs, params, *, with_test: bool) -> dict[str, torch.Tensor]:
        return {f"{name}_loss": self._loss(name) for name in self.splits}

    def postfix(self, log) -> dict[str, str]:
        return {"loss": f"{log.last('train_loss'):.3e}"}

    def final_metrics(self) -> dict[str, float]:
        return {f"{name}_loss": self._loss(name).item() for name in self.splits}


def fit_msdl(
    task, cfg: MSDLConfig, train_cfg: TrainConfig, *, progress: bool = False
) -> tuple[MSDLModel, GradeRecord, DivergenceError | None]:
    """Train an MSDL model on a FunctionTask's train split, recording train/val/test losses
    every ``record_every`` epochs, with the papers' validation-smoothing early stop. Returns
    the model, its record, and the DivergenceError that ended it (None when it did not)."""
    device = train_cfg.torch_device()
    shape = cfg.shape(task.in_dim, task.out_dim)
    # One seed per subnet, so the subnets start different (the authors split one key).
    inits = [
        BlockParams.init(shape, seed=train_cfg.seed + s, device=device, scheme=train_cfg.init)
        for s in range(len(cfg.coeffs))
    ]
    params = StackedParams(shape, len(inits), torch.cat([b.flat for b in inits]))
    model = MSDLModel(params, cfg.coeffs)
    objective = MSDLObjective(task, model)
    largest = max(s.x.shape[0] for s in task.splits.values())
    engine = bind(
        shape, device=device, rows=largest, options=train_cfg.options(), backend=train_cfg.backend
    )
    inputs = FeatureCache({name: split.x for name, split in task.splits.items()})
    objective.start_grade(engine, inputs, params)
    train_cfg = train_cfg.for_grade(0)
    lr = per_grade(train_cfg.lr, 0)
    optimizer = GradeOptimizer(engine, train_cfg.optimizer, lr, params.flat.numel())
    rule = ValidationSmoothing(train_cfg.record_every, train_cfg.smooth_window, train_cfg.rel_tol)
    start, diverged = time.perf_counter(), None
    try:
        grade = GradeSetup(1, 1, params, inputs, objective, optimizer, label="msdl")
        run = run_grade(grade, train_cfg, rule, progress=Progress(quiet=not progress))
        epochs, reason, curves = run.epochs, run.stop_reason, run.log.series
    except DivergenceError as exc:
        diverged, epochs, reason, curves = exc, exc.epoch, "diverged", {}
    ops = (*objective.ops, "update")
    record = GradeRecord(
        grade=1,
        shape={**shape.to_dict(), "subnets": len(inits), "coeffs": list(cfg.coeffs)},
        epochs_run=epochs,
        stop_reason=reason,
        time_s=time.perf_counter() - start,
        curves={name: {"epoch": e, "value": v} for name, (e, v) in curves.items()},
        final=objective.final_metrics(),
        backend={**engine.describe(), "ops": dict.fromkeys(ops, engine.backend)},
    )
    return model, record, diverged

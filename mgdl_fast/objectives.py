"""What a grade minimises. The regression objective fits the residual of the frozen grades."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from .block import BlockParams
from .dispatch import resolve
from .tasks.regression import RegressionTask, psnr_from_loss
from .tasks.synthetic import FunctionTask


class Objective(Protocol):
    """What the trainer needs from a task's loss. ``inputs.get(split)`` gives the grade's inputs
    ``[N, D]`` (coordinates or cached features) for each split in ``splits``."""

    splits: tuple[str, ...]

    def start_grade(self, x_train: torch.Tensor, params: BlockParams) -> dict[str, str]:
        """Prepare a new grade (pick backends); returns op -> backend name."""

    def step(self, inputs, params: BlockParams, grad: BlockParams) -> torch.Tensor:
        """Write dL/dparams into ``grad``; return the loss as a 0-dim device tensor."""

    def record(self, inputs, params: BlockParams, *, with_test: bool) -> dict[str, torch.Tensor]:
        """Metrics to log now (0-dim device tensors); must include ``train_loss``."""

    def postfix(self, log) -> dict[str, str]:
        """What the progress bar shows, from the flushed MetricLog."""

    def grade_scale(self) -> float:
        """The factor the just-trained grade's output is multiplied by in the prediction."""

    def absorb(self, outputs: dict[str, torch.Tensor]) -> None:
        """Take a frozen grade's outputs ``[N, C]`` per split into the running state."""

    def final_metrics(self) -> dict[str, float]:
        """Metrics of the accumulated prediction after the latest grade."""

    def reconstruction(self) -> np.ndarray:
        """The accumulated prediction as an image ``[H, W, C]``."""


@torch.no_grad()
def chunked_mse(
    fwd, x: torch.Tensor, target: torch.Tensor, params: BlockParams, chunk: int
) -> torch.Tensor:
    """0.5 * mean((block(x) - target)^2) as a 0-dim device tensor, ``chunk`` rows at a time."""
    total = torch.zeros((), dtype=torch.float64, device=x.device)
    for start in range(0, x.shape[0], chunk):
        diff = fwd(x[start : start + chunk], params) - target[start : start + chunk]
        total += torch.sum(diff.double() ** 2)
    return 0.5 * total / target.numel()


class RegressionObjective:
    """0.5 * mean((grade output - residual)^2) on the train split, with the residual of every
    split kept up to date as grades are frozen (PROTOCOL 2)."""

    splits = ("train", "val", "test")

    def __init__(
        self,
        task: RegressionTask | FunctionTask,
        *,
        backend: str | None = None,
        chunk_size: int = 1 << 16,
    ):
        self.task = task
        self.backend = backend
        self.chunk_size = chunk_size
        self.residual = {name: split.y.clone() for name, split in task.splits.items()}

    def start_grade(self, x_train: torch.Tensor, params: BlockParams) -> dict[str, str]:
        """Pick the backends for this grade's ops; returns op -> backend name."""
        step_name, self._step = resolve("grade_step", x_train, params, backend=self.backend)
        fwd_name, self._fwd = resolve("block_fwd", x_train, params, backend=self.backend)
        return {"grade_step": step_name, "block_fwd": fwd_name}

    def step(self, inputs, params: BlockParams, grad: BlockParams) -> torch.Tensor:
        """Write the train-loss gradient into ``grad``; return the loss (device tensor)."""
        return self._step(inputs.get("train"), self.residual["train"], params, grad_params=grad)

    def record(self, inputs, params: BlockParams, *, with_test: bool) -> dict[str, torch.Tensor]:
        names = self.splits if with_test else ("train", "val")
        return {
            f"{name}_loss": chunked_mse(
                self._fwd, inputs.get(name), self.residual[name], params, self.chunk_size
            )
            for name in names
        }

    def postfix(self, log) -> dict[str, str]:
        return {
            "loss": f"{log.last('train_loss'):.3e}",
            "val_psnr": f"{psnr_from_loss(log.last('val_loss')):.2f}",
        }

    def grade_scale(self) -> float:
        return 1.0

    def absorb(self, outputs: dict[str, torch.Tensor]) -> None:
        """Subtract a frozen grade's outputs ``[N, C]`` from every split's residual."""
        for name, out in outputs.items():
            self.residual[name].sub_(out)

    def final_metrics(self) -> dict[str, float]:
        """Losses and PSNRs of the accumulated prediction, from the residuals."""
        metrics = {}
        for name, residual in self.residual.items():
            loss = 0.5 * torch.mean(residual.double() ** 2).item()
            metrics[f"{name}_loss"] = loss
            metrics[f"{name}_psnr"] = psnr_from_loss(loss)
        return metrics

    def reconstruction(self) -> np.ndarray:
        """The accumulated prediction on the test split, shaped ``task.shape`` (float32): the
        full image ``[H, W, C]`` for images, ``[N, C]`` for functions."""
        test = self.task.splits["test"]
        return (test.y - self.residual["test"]).reshape(self.task.shape).cpu().numpy()

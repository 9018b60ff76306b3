"""Image regression (PROTOCOL 1.1 and 2): fit pixel values from pixel coordinates.

Train = even rows and even columns, validation = odd rows and odd columns, test = every pixel.
Loss 0.5 * mean((pred - y)^2); PSNR = -10 log10(2 * loss) for peak 1. The objective fits the
residual of the frozen grades; ``DEFAULTS`` and ``EPOCHS`` are the papers' settings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..grid import coordinate_grid
from .base import Split

SPLITS = ("train", "val", "test")
# PROTOCOL 2: 4 grades x [128, 128], Adam 1e-3, records every 10 epochs, the test loss every
# 50 (README: "Test loss cadence"), validation-smoothing early stopping.
DEFAULTS = {
    "grades": 4,
    "width": 128,
    "layers": 2,
    "lr": 1e-3,
    "record_every": 10,
    "test_every": 50,
    "early_stopping": True,
    "cache_dtype": "auto",
}
# Epochs per grade: the papers' 10,000 (with early stopping), or a CPU-scale count.
EPOCHS = {"quick": 300, "paper": 10_000, "colour": 10_000}
# The colour-image protocol of Fang & Xu's NeurIPS 2024 code (PERF.md section 7: Cat, Sea,
# Building): 4 grades of 3 hidden layers of 256, Adam with per-grade learning rates, 10,000
# epochs per grade; the early stop and cadence of PROTOCOL 2 are kept (that code's are not
# recorded in the team's notes).
COLOUR = {"grades": 4, "width": 256, "layers": 3, "lr": [1e-3, 1e-3, 5e-4, 5e-4]}


def psnr_from_loss(loss: float) -> float:
    """PSNR in dB for peak 1 from a 0.5 * MSE loss."""
    return -10.0 * math.log10(2.0 * loss) if loss > 0 else math.inf


class RegressionTask:
    """The even/odd split of one image ``[H, W, C]`` into train, val and test (full image)."""

    name = "regression"

    def __init__(self, pixels: np.ndarray, device: torch.device | str = "cpu"):
        height, width, channels = pixels.shape
        grid = coordinate_grid(height, width)
        image = torch.as_tensor(pixels, dtype=torch.float32)
        views = {
            "train": (grid[::2, ::2], image[::2, ::2]),
            "val": (grid[1::2, 1::2], image[1::2, 1::2]),
            "test": (grid, image),
        }
        self.shape = (height, width, channels)
        self.splits = {
            name: Split(
                x.reshape(-1, 2).contiguous().to(device),
                y.reshape(-1, channels).contiguous().to(device),
                (x.shape[0], x.shape[1]),
            )
            for name, (x, y) in views.items()
        }

    @property
    def in_dim(self) -> int:
        return 2

    @property
    def out_dim(self) -> int:
        return self.shape[2]


class RegressionObjective:
    """0.5 * mean((grade output - residual)^2) on the train split, with the residual of every
    split kept up to date as grades are frozen (PROTOCOL 2). Works on any task with a
    ``train`` split; ``val`` and ``test`` are recorded when the task has them."""

    ops = ("step", "forward")
    capturable = True

    def __init__(self, task):
        if "train" not in task.splits:
            raise ValueError("a regression task needs a 'train' split")
        self.task = task
        self.splits = tuple(s for s in SPLITS if s in task.splits)
        self.residual = {name: task.splits[name].y.clone() for name in self.splits}

    def start_grade(self, engine, inputs, params) -> None:
        """Bind the grade: check its operands once (each split's first chunk, the chunk sizes
        planned) and allocate the record buffer and, for a chunked step, its gradient sum."""
        for split in self.splits:
            _, x = next(inputs.chunks(split, engine.rows))
            y = self.residual[split]
            engine.validate(x, params.flat, targets=y[: x.shape[0]])
            if y.shape[0] > engine.rows and y.shape[0] % engine.rows:
                engine.prepare(y.shape[0] % engine.rows)
        self._engine = engine
        rows = min(engine.rows, max(inputs.rows(s) for s in self.splits))
        device = params.flat.device
        self._out = torch.empty(rows, params.shape.out_dim, device=device)
        self._chunked = self.residual["train"].shape[0] > engine.rows
        if self._chunked:
            self._chunk_grad = torch.empty_like(params.flat)
            self._loss = torch.zeros((), device=device)

    def step(self, inputs, params, grad) -> torch.Tensor:
        """Write the train-loss gradient into ``grad``; return the loss (device tensor). A
        train split larger than the engine's rows is summed chunk by chunk, each chunk's mean
        weighted by its share of the rows: the full-batch gradient, in another order."""
        y, rows = self.residual["train"], self._engine.rows
        if not self._chunked:
            _, x = next(inputs.chunks("train", rows))
            return self._engine.step(x, y, params.flat, grad.flat)
        grad.flat.zero_()
        self._loss.zero_()
        for start, x in inputs.chunks("train", rows):
            n = x.shape[0]
            loss = self._engine.step(x, y[start : start + n], params.flat, self._chunk_grad)
            share = n / y.shape[0]
            grad.flat.add_(self._chunk_grad, alpha=share)
            self._loss.add_(loss, alpha=share)
        return self._loss

    @torch.no_grad()
    def _mse(self, inputs, split: str, params) -> torch.Tensor:
        """0.5 * mean((block(x) - target)^2) as a 0-dim float64 device tensor, by chunks."""
        target = self.residual[split]
        total = torch.zeros((), dtype=torch.float64, device=target.device)
        for start, x in inputs.chunks(split, self._out.shape[0]):
            out = self._out[: x.shape[0]]
            self._engine.forward(x, params.flat, out)
            diff = out - target[start : start + x.shape[0]]
            total += torch.sum(diff.double() ** 2)
        return 0.5 * total / target.numel()

    def record(self, inputs, params, *, with_test: bool) -> dict[str, torch.Tensor]:
        names = [s for s in self.splits if s != "test" or with_test]
        return {f"{name}_loss": self._mse(inputs, name, params) for name in names}

    def postfix(self, log) -> dict[str, str]:
        shown = {"loss": f"{log.last('train_loss'):.3e}"}
        if "val" in self.splits:
            shown["val_psnr"] = f"{psnr_from_loss(log.last('val_loss')):.2f}"
        return shown

    def grade_scale(self) -> float:
        return 1.0

    def mean_predictor_psnr(self) -> float:
        """Train PSNR of the best constant in place of the next grade (its residual's mean)."""
        residual = self.residual["train"].double()
        loss = 0.5 * torch.mean((residual - residual.mean(dim=0)) ** 2).item()
        return psnr_from_loss(loss)

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
        """The accumulated prediction on the test split (the whole image ``[H, W, C]`` for
        images, ``[N, C]`` for functions), or ``[N, C]`` on the train split of a task without
        one; float32."""
        name = "test" if "test" in self.splits else "train"
        split = self.task.splits[name]
        shape = self.task.shape if name == "test" else tuple(split.y.shape)
        return (split.y - self.residual[name]).reshape(shape).cpu().numpy()


def make(image, task_cfg: dict, train_cfg, device: torch.device):
    """The regression task and objective of an image."""
    task = RegressionTask(image.pixels, device=device)
    return task, RegressionObjective(task)


# Where each split's pixels lie: (first row, row step, first column, column step).
SPLIT_LATTICE = {"train": (0, 2, 0, 2), "val": (1, 2, 1, 2), "test": (0, 1, 0, 1)}


@dataclass
class LazySplit:
    """A split of a streamed image: targets ``y [N, C]`` in memory, coordinates made on demand
    from its lattice (``x`` is None: see ``StreamedRegressionTask.coords``)."""

    y: torch.Tensor
    grid: tuple[int, int]
    lattice: tuple[int, int, int, int]
    x: None = None


class StreamedRegressionTask:
    """The even/odd split of an image read band by band (``io.lazy.LazyImage``): the same
    splits, targets and coordinates as RegressionTask, without ever holding the image or a
    coordinate grid; only the targets ``[N, C]`` fp32 are kept."""

    name = "regression"

    def __init__(self, image, device: torch.device | str = "cpu", band_rows: int = 256):
        height, width, channels = image.shape
        self.shape, self.device = (height, width, channels), torch.device(device)
        self.splits: dict[str, LazySplit] = {}
        for name, (r0, rs, c0, cs) in SPLIT_LATTICE.items():
            rows, cols = len(range(r0, height, rs)), len(range(c0, width, cs))
            y = torch.empty(rows * cols, channels)
            for k in range(0, rows, band_rows):
                top = r0 + k * rs
                pixels = image.band(top, min(height, top + band_rows * rs), rs, c0, cs)
                y[k * cols : k * cols + pixels.shape[0] * cols] = torch.from_numpy(
                    pixels.reshape(-1, channels)
                )
            self.splits[name] = LazySplit(y.to(self.device), (rows, cols), (r0, rs, c0, cs))

    @property
    def in_dim(self) -> int:
        return 2

    @property
    def out_dim(self) -> int:
        return self.shape[2]

    def coords(self, split: str, start: int, stop: int) -> torch.Tensor:
        """``[stop - start, 2]`` fp32 coordinates (column / W, row / H) of the split's pixels
        ``start..stop-1`` in row-major order: the values RegressionTask's grid holds."""
        s = self.splits[split]
        r0, rs, c0, cs = s.lattice
        cols = s.grid[1]
        index = torch.arange(start, stop, dtype=torch.int64, device=self.device)
        rows = (r0 + (index // cols) * rs).double() / self.shape[0]
        columns = (c0 + (index % cols) * cs).double() / self.shape[1]
        return torch.stack([columns, rows], dim=1).to(torch.float32)

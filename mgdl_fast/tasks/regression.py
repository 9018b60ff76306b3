"""Image regression (PROTOCOL 1.1 and 2): fit pixel values from pixel coordinates.

Train = even rows and even columns, validation = odd rows and odd columns, test = every pixel.
Loss 0.5 * mean((pred - y)^2); PSNR = -10 log10(2 * loss / peak^2), peak 1 for images in
[0, 1] (the objective's ``peak``: a physical field's data range). The objective fits the
residual of the frozen grades; ``DEFAULTS`` and ``EPOCHS`` are the papers' settings.

Sharded over the ranks of a ``mgdl_fast.distributed.World``, a task holds only its contiguous
rows of every split (coordinates, targets; the objective's residuals follow) and ``totals``
gives each split's rows over all ranks; the objective's steps and records then sum over ranks.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..distributed import SINGLE, PackedSum, World, current, gather_rows
from ..errors import InputError
from ..grid import coordinate_grid
from .base import Split
from .lattice import sharded_splits, split_rows

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
# The quick preset reads Gaussian Fourier features of the coordinates (64 frequencies, sigma 5):
# chosen by PSNR per second on the project's 2-core CPU (docs/QUALITY.md: +3 dB over the raw
# coordinates on the default image, in less time). paper and colour keep the raw coordinates.
# Its time budget (seconds of training, ``train.budget``) is sized for about 90 s wall: the
# default fit took 84.5-87.6 s with it (405 s without) on the project's 2-core AMD EPYC under a
# load of 2-6, in bf16 and in fp32 (as on a CPU without bf16). The papers' presets keep their
# epochs.
QUICK = {"encoding": "fourier", "frequencies": 64, "sigma": 5.0, "time_budget_s": 80.0}
# What each preset sets on top of DEFAULTS.
PRESET_DEFAULTS = {"quick": QUICK, "colour": COLOUR}


# Rows per float64 pass of the metrics: a large split is never widened to float64 whole (a
# 16k^2 test split would need 2 GB); a split of at most this many rows keeps the one-pass sum.
SQUARES_CHUNK = 1 << 21


def _squares(rows: torch.Tensor, mean: torch.Tensor | None = None) -> torch.Tensor:
    """sum((rows - mean)^2) in float64, a 0-dim tensor."""
    wide = rows.double() if mean is None else rows.double() - mean
    return torch.sum(wide * wide)


def _chunked(t: torch.Tensor, reduce) -> torch.Tensor:
    """``reduce`` over ``t [N, C]`` summed over float64 passes of SQUARES_CHUNK rows."""
    parts = [
        reduce(t[start : start + SQUARES_CHUNK]) for start in range(0, t.shape[0], SQUARES_CHUNK)
    ]
    return torch.stack(parts).sum(dim=0)


def psnr_from_loss(loss: float, peak: float = 1.0) -> float:
    """PSNR in dB, ``10 log10(peak^2 / MSE)``, from a 0.5 * MSE loss (``peak``: the data
    range, 1 for images in [0, 1])."""
    return -10.0 * math.log10(2.0 * loss / peak**2) if loss > 0 else math.inf


def field_pixels(array) -> tuple[np.ndarray, float]:
    """``(pixels [H, W, C] float64, max - min)`` of a field ``[H, W]`` or ``[H, W, C]`` of
    finite real values in any range (a temperature in kelvin); InputError otherwise."""
    pixels = np.asarray(array)
    if pixels.ndim == 2:
        pixels = pixels[..., None]
    if pixels.ndim != 3 or min(pixels.shape[:2]) < 2 or not pixels.shape[2]:
        raise InputError(f"a field must be [H, W] or [H, W, C] with H, W >= 2, got {array.shape}")
    if not (np.issubdtype(pixels.dtype, np.floating) or np.issubdtype(pixels.dtype, np.integer)):
        raise InputError(f"a field must hold real numbers, got {pixels.dtype}")
    pixels = pixels.astype(np.float64)
    if not np.isfinite(pixels).all():
        raise InputError("the field has NaN or infinite values")
    span = float(pixels.max() - pixels.min())
    return pixels, span if span > 0 else 1.0


class RegressionTask:
    """The even/odd split of one image ``[H, W, C]`` into train, val and test (full image).

    ``world`` shards every split's rows over ranks (None: the default process group's ranks
    when torch.distributed is initialised, else one process holding every row)."""

    name = "regression"

    def __init__(
        self, pixels: np.ndarray, device: torch.device | str = "cpu", world: World | None = None
    ):
        height, width, channels = pixels.shape
        self.shape = (height, width, channels)
        self.world = current() if world is None else world
        if self.world.sharded:
            self.splits = sharded_splits(pixels, self.world, device)
            self.totals = split_rows(height, width)
            return
        grid = coordinate_grid(height, width)
        image = torch.as_tensor(pixels, dtype=torch.float32)
        views = {
            "train": (grid[::2, ::2], image[::2, ::2]),
            "val": (grid[1::2, 1::2], image[1::2, 1::2]),
            "test": (grid, image),
        }
        self.splits = {
            name: Split(
                x.reshape(-1, 2).contiguous().to(device),
                y.reshape(-1, channels).contiguous().to(device),
                (x.shape[0], x.shape[1]),
            )
            for name, (x, y) in views.items()
        }
        self.totals = {name: split.y.shape[0] for name, split in self.splits.items()}

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

    def __init__(self, task, peak: float = 1.0):
        if "train" not in task.splits:
            raise ValueError("a regression task needs a 'train' split")
        if not (isinstance(peak, (int, float)) and 0 < peak < math.inf):
            raise InputError(
                f"the PSNR peak (data range) must be a finite number > 0, got {peak!r}"
            )
        # The PSNR peak: 1 for images in [0, 1], the data range of a physical field.
        self.task, self.peak = task, float(peak)
        self.splits = tuple(s for s in SPLITS if s in task.splits)
        self.residual = {name: task.splits[name].y.clone() for name in self.splits}
        # A sharded task's residuals are this rank's rows; means divide by every rank's rows.
        self.world = getattr(task, "world", SINGLE)
        totals = getattr(task, "totals", {})
        self.rows = {name: totals.get(name, self.residual[name].shape[0]) for name in self.splits}

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
        if self._chunked or self.world.sharded:
            self._chunk_grad = torch.empty_like(params.flat)
            self._loss = torch.zeros((), device=device)
        if self.world.sharded:
            self._packed = PackedSum(self.world, params.flat.numel(), device)

    def step(self, inputs, params, grad) -> torch.Tensor:
        """Write the train-loss gradient into ``grad``; return the loss (device tensor). A
        train split larger than the engine's rows is summed chunk by chunk, each chunk's mean
        weighted by its share of the rows: the full-batch gradient, in another order."""
        y, rows = self.residual["train"], self._engine.rows
        if self.world.sharded:
            return self._sharded_step(inputs, params, grad)
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

    def _sharded_step(self, inputs, params, grad) -> torch.Tensor:
        """This rank's chunks weighted by their share of every rank's train rows, summed over
        ranks with the loss in one all_reduce: with two ranks of one chunk each, bit for bit
        the chunked step of one process whose chunks end at the shard boundary."""
        y, packed, total = self.residual["train"], self._packed, self.rows["train"]
        packed.buffer.zero_()
        for start, x in inputs.chunks("train", self._engine.rows):
            n = x.shape[0]
            loss = self._engine.step(x, y[start : start + n], params.flat, self._chunk_grad)
            packed.grad.add_(self._chunk_grad, alpha=n / total)
            packed.loss.add_(loss, alpha=n / total)
        packed.reduce()
        grad.flat.copy_(packed.grad)
        return packed.loss

    @torch.no_grad()
    def _squares(self, inputs, split: str, params) -> torch.Tensor:
        """sum((block(x) - target)^2) over this rank's rows, a 0-dim float64 device tensor."""
        target = self.residual[split]
        total = torch.zeros((), dtype=torch.float64, device=target.device)
        for start, x in inputs.chunks(split, self._out.shape[0]):
            out = self._out[: x.shape[0]]
            self._engine.forward(x, params.flat, out)
            diff = out - target[start : start + x.shape[0]]
            total += torch.sum(diff.double() ** 2)
        return total

    def _numel(self, split: str) -> int:
        """Target entries of ``split`` over every rank."""
        return self.rows[split] * self.residual[split].shape[1]

    def record(self, inputs, params, *, with_test: bool) -> dict[str, torch.Tensor]:
        """0.5 * MSE of each split (the test split when ``with_test``), 0-dim float64; a
        sharded run sums the ranks' squared errors in one all_reduce."""
        names = [s for s in self.splits if s != "test" or with_test]
        squares = [self._squares(inputs, name, params) for name in names]
        if self.world.sharded:
            squares = list(self.world.all_reduce_(torch.stack(squares)).unbind())
        return {f"{n}_loss": 0.5 * total / self._numel(n) for n, total in zip(names, squares)}

    def postfix(self, log) -> dict[str, str]:
        shown = {"loss": f"{log.last('train_loss'):.3e}"}
        if "val" in self.splits:
            shown["val_psnr"] = f"{psnr_from_loss(log.last('val_loss'), self.peak):.2f}"
        return shown

    def grade_scale(self) -> float:
        return 1.0

    def mean_predictor_psnr(self) -> float:
        """Train PSNR of the best constant in place of the next grade (its residual's mean)."""
        residual = self.residual["train"]
        if self.world.sharded:
            sums = self.world.all_reduce_(_chunked(residual, lambda r: r.double().sum(dim=0)))
            mean = sums / self.rows["train"]
            squares = self.world.all_reduce_(_chunked(residual, lambda r: _squares(r, mean)))
            return psnr_from_loss(0.5 * squares.item() / self._numel("train"), self.peak)
        if residual.shape[0] <= SQUARES_CHUNK:
            wide = residual.double()
            return psnr_from_loss(
                0.5 * torch.mean((wide - wide.mean(dim=0)) ** 2).item(), self.peak
            )
        mean = _chunked(residual, lambda r: r.double().sum(dim=0)) / residual.shape[0]
        squares = _chunked(residual, lambda r: _squares(r, mean))
        return psnr_from_loss(0.5 * squares.item() / residual.numel(), self.peak)

    def absorb(self, outputs: dict[str, torch.Tensor]) -> None:
        """Subtract a frozen grade's outputs ``[N, C]`` from every split's residual."""
        for name, out in outputs.items():
            self.residual[name].sub_(out)

    def final_metrics(self) -> dict[str, float]:
        """Losses and PSNRs of the accumulated prediction, from the residuals."""
        metrics = {}
        for name, residual in self.residual.items():
            if self.world.sharded:
                squares = self.world.all_reduce_(_chunked(residual, _squares))
                loss = 0.5 * squares.item() / self._numel(name)
            elif residual.shape[0] <= SQUARES_CHUNK:
                loss = 0.5 * torch.mean(residual.double() ** 2).item()
            else:
                loss = 0.5 * _chunked(residual, _squares).item() / residual.numel()
            metrics[f"{name}_loss"] = loss
            metrics[f"{name}_psnr"] = psnr_from_loss(loss, self.peak)
        return metrics

    def reconstruction(self) -> np.ndarray:
        """The accumulated prediction on the test split (the whole image ``[H, W, C]`` for
        images, ``[N, C]`` for functions), or ``[N, C]`` on the train split of a task without
        one; float32. A sharded run gathers every rank's rows on every rank."""
        name = "test" if "test" in self.splits else "train"
        split = self.task.splits[name]
        rows = gather_rows(self.world, split.y - self.residual[name], self.rows[name])
        shape = self.task.shape if name == "test" else tuple(rows.shape)
        return rows.reshape(shape).cpu().numpy()


def make(image, task_cfg: dict, train_cfg, device: torch.device):
    """The regression task and objective of an image."""
    task = RegressionTask(image.pixels, device=device)
    return task, RegressionObjective(task)

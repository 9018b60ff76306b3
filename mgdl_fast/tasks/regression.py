"""Image regression (PROTOCOL 1.1 and 2): fit pixel values from pixel coordinates.

Train = even rows and even columns, validation = odd rows and odd columns, test = every pixel.
Loss 0.5 * mean((pred - y)^2); PSNR = -10 log10(2 * loss) for peak 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

SPLITS = ("train", "val", "test")


def coordinate_grid(height: int, width: int) -> torch.Tensor:
    """``[H, W, 2]`` fp32 grid: ``[..., 0]`` = column / W, ``[..., 1]`` = row / H (both in [0, 1)).

    Same as the papers' ``np.stack(np.meshgrid(linspace(0,1,W,False), linspace(0,1,H,False)), -1)``.
    """
    rows = torch.arange(height, dtype=torch.float64) / height
    cols = torch.arange(width, dtype=torch.float64) / width
    grid_rows, grid_cols = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([grid_cols, grid_rows], dim=-1).to(torch.float32)


def psnr_from_loss(loss: float) -> float:
    """PSNR in dB for peak 1 from a 0.5 * MSE loss."""
    return -10.0 * math.log10(2.0 * loss) if loss > 0 else math.inf


@dataclass
class Split:
    """Inputs ``x [N, D]``, targets ``y [N, C]``, and the ``(rows, cols)`` they tile."""

    x: torch.Tensor
    y: torch.Tensor
    grid: tuple[int, int]


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

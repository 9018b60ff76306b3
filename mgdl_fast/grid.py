"""The coordinate grid a network reads for an image (PROTOCOL 1.1), whole or by rows.

Rendering a 30000 x 30000 image must not build its 14 GB grid first, so ``grid_rows`` makes the
coordinates of any band of rows on demand; ``coordinate_grid`` is the whole grid for images
that fit.
"""

from __future__ import annotations

import torch


def grid_rows(
    height: int, width: int, start: int, stop: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``[(stop - start) * W, 2]`` fp32 coordinates of rows ``start..stop-1`` in row-major
    pixel order: ``[:, 0]`` = column / W, ``[:, 1]`` = row / H (both in [0, 1))."""
    rows = torch.arange(start, stop, dtype=torch.float64, device=device) / height
    cols = torch.arange(width, dtype=torch.float64, device=device) / width
    grid_r, grid_c = torch.meshgrid(rows, cols, indexing="ij")
    return torch.stack([grid_c, grid_r], dim=-1).reshape(-1, 2).to(torch.float32)


def coordinate_grid(height: int, width: int) -> torch.Tensor:
    """``[H, W, 2]`` fp32 grid: ``[..., 0]`` = column / W, ``[..., 1]`` = row / H.

    Same as the papers' ``np.stack(np.meshgrid(linspace(0,1,W,False), linspace(0,1,H,False)), -1)``.
    """
    return grid_rows(height, width, 0, height).reshape(height, width, 2)

"""A 2D function-approximation target with high-frequency content on [0, 1]^2 (issue 3).

Neither paper publishes a 2D synthetic target (PROTOCOL 7: paper 2's functions are unknown), so
this one is ours, built like the 1D settings of PROTOCOL 6 (unit amplitudes, frequencies from 1
to 30, the phases of setting 2):

    f(x, y) = sin(2 pi x + p1) sin(2 pi y + p2)          products, frequency 1
            + sin(2 pi (10 x + 10 y) + p3)                a plane wave, frequency 10 per axis
            + sin(2 pi 30 x + p4) sin(2 pi 30 y + p5)     products, frequency 30

Train: the ``n x n`` grid ``linspace(0, 1, n)`` (endpoints included, n = 2**J); validation:
``n * n`` uniform points (torch generator, seed 1); test: the 256 x 256 grid.
"""

from __future__ import annotations

import math

import torch

from ..base import Split
from .sines import SETTINGS, FunctionTask

PHASES = SETTINGS[2]["phi"]
TEST_SIDE = 256


def target_2d(xy: torch.Tensor) -> torch.Tensor:
    """``f [N, 1]`` at points ``xy [N, 2]`` (computed in float64, returned in xy's dtype)."""
    x, y = xy.double().unbind(dim=1)
    p1, p2, p3, p4, p5 = PHASES
    two_pi = 2 * math.pi
    f = (
        torch.sin(two_pi * x + p1) * torch.sin(two_pi * y + p2)
        + torch.sin(two_pi * (10 * x + 10 * y) + p3)
        + torch.sin(two_pi * 30 * x + p4) * torch.sin(two_pi * 30 * y + p5)
    )
    return f[:, None].to(xy.dtype)


def _grid(side: int) -> torch.Tensor:
    """``[side * side, 2]`` points of the grid ``linspace(0, 1, side)^2``, row-major in y."""
    axis = torch.linspace(0, 1, side, dtype=torch.float64)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1)


def function_2d(*, J: int = 7, device: torch.device | str = "cpu") -> FunctionTask:
    """The 2D task with a ``2**J x 2**J`` training grid."""
    n = 2**J
    gen = torch.Generator().manual_seed(1)
    points = {
        "train": (_grid(n), (n, n)),
        "val": (torch.rand(n * n, 2, generator=gen, dtype=torch.float64), (n * n, 1)),
        "test": (_grid(TEST_SIDE), (TEST_SIDE, TEST_SIDE)),
    }
    splits = {
        name: Split(xy.float().to(device), target_2d(xy).float().to(device), grid)
        for name, (xy, grid) in points.items()
    }
    return FunctionTask(
        splits, "2d: sin(2pi x)sin(2pi y) + sin(2pi(10x+10y)) + sin(2pi 30x)sin(2pi 30y), phased"
    )

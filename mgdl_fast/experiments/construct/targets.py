"""The targets of paper 2's studies (ours: the paper's functions are not known, PROTOCOL 7).

``CONSTRUCT`` holds float64 NumPy targets with the bounds ``construct`` takes (a Lipschitz bound
of ``sup |grad f|_1`` and, for smooth ones, of ``sup sum_ab |d_a d_b f|``). ``TRAINED`` holds the
trained study's high-frequency targets as torch functions; ``function_task`` samples one as a
``FunctionTask`` (train: the uniform grid of 2^J points per axis; val: as many uniform random
points, seed 1; test: a finer uniform grid).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ...tasks.base import Split
from ...tasks.functions import FunctionTask

PI = math.pi
# Sum of sines up to frequency 50 (cycles on [0, 1]); phases fixed once.
SINES_KAPPA = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0)
SINES_PHI = (0.3, 1.9, 4.1, 2.6, 5.2, 0.8)


@dataclass(frozen=True)
class Target:
    """A target on [0, 1]^D: ``f`` maps ``[N, D]`` to ``[N]`` (NumPy or torch, float64)."""

    name: str
    dim: int
    f: Callable
    formula: str
    lipschitz: float | None = None
    curvature: float | None = None


def _sines(x, lib):
    return sum(lib.sin(2 * PI * k * x[:, 0] + p) for k, p in zip(SINES_KAPPA, SINES_PHI))


def _osc2d(x, lib):
    u, v = x[:, 0], x[:, 1]
    return lib.sin(8 * PI * u) * lib.sin(8 * PI * v) + 0.5 * lib.sin(2 * PI * (5 * u + 7 * v))


_SINES_L = sum(2 * PI * k for k in SINES_KAPPA)
CONSTRUCT = {
    t.name: t
    for t in (
        Target("smooth", 1, lambda x: np.exp(-x[:, 0]) * np.cos(3 * x[:, 0]),
               "exp(-x) cos(3x)", 4.0, 10.0),
        Target("sin32", 1, lambda x: np.sin(32 * PI * x[:, 0]), "sin(32 pi x)",
               32 * PI, (32 * PI) ** 2),
        Target("kink", 1, lambda x: np.abs(x[:, 0] - 0.3), "|x - 0.3|", 1.0),
        Target("sines50", 1, lambda x: _sines(x, np), "sum_k sin(2 pi k x + p_k), k <= 50",
               _SINES_L, sum((2 * PI * k) ** 2 for k in SINES_KAPPA)),
        Target("exp_xy", 2, lambda x: np.exp(x[:, 0] * x[:, 1]), "exp(xy)",
               2 * math.e, 6 * math.e),
        Target("osc2d", 2, lambda x: _osc2d(x, np),
               "sin(8 pi x) sin(8 pi y) + sin(2 pi (5x + 7y)) / 2", 16 * PI + 12 * PI,
               (16 * PI) ** 2 + 0.5 * (24 * PI) ** 2),
    )
}  # fmt: skip
TRAINED = {
    "sin32": Target("sin32", 1, lambda x: torch.sin(32 * PI * x[:, 0]), "sin(32 pi x)"),
    "sines50": Target("sines50", 1, lambda x: _sines(x, torch), CONSTRUCT["sines50"].formula),
    "osc2d": Target("osc2d", 2, lambda x: _osc2d(x, torch), CONSTRUCT["osc2d"].formula),
}


def _grid(side: int, dim: int) -> torch.Tensor:
    axis = torch.linspace(0, 1, side, dtype=torch.float64)
    mesh = torch.meshgrid(*([axis] * dim), indexing="ij")
    return torch.stack([m.reshape(-1) for m in mesh], dim=1)


def function_task(target: Target, J: int, test_side: int) -> FunctionTask:
    """``target`` on 2^J training points per axis (float32 splits on the CPU)."""
    side = 2**J
    gen = torch.Generator().manual_seed(1)
    points = {
        "train": (_grid(side, target.dim), (side,) * target.dim),
        "val": (torch.rand(side**target.dim, target.dim, generator=gen, dtype=torch.float64),
                (side**target.dim, 1)),
        "test": (_grid(test_side, target.dim), (test_side,) * target.dim),
    }  # fmt: skip
    splits = {
        name: Split(x.float(), target.f(x)[:, None].float(), _rows_cols(grid))
        for name, (x, grid) in points.items()
    }
    return FunctionTask(splits, f"{target.name}: {target.formula}")


def _rows_cols(grid: tuple[int, ...]) -> tuple[int, int]:
    return (grid[0], 1) if len(grid) == 1 else (grid[0], grid[1])

"""The papers' 1D synthetic regression data (PROTOCOL 6): sums of sines.

    y(x) = sum_i sin(2 pi kappa_i x + phi_i)
    train: linspace(0, 1, 2**J) (endpoints included), val: 2**J uniform points, test: 10,000
    points on linspace(0, 1); loss 0.5 * mean((f - y)^2).

Setting 1: kappa = [1, 5.5, 10]; setting 2: kappa = linspace(1, 30, 5). The phases are the values
the authors' JAX code drew (``uniform(PRNGKey(0), (K,), 0, 2 pi)``, printed in their notebooks).
The validation points cannot be drawn with JAX's generator here; they come from torch's with the
same seed (1), so they match the authors' in distribution only.
"""

from __future__ import annotations

import math

import torch

from ...errors import InputError
from ..base import Split

SETTINGS = {
    1: {"kappa": [1.0, 5.5, 10.0], "phi": [6.0652933, 1.9772031, 3.9774444]},
    2: {
        "kappa": [1.0, 8.25, 15.5, 22.75, 30.0],
        "phi": [3.6096928, 0.6263458, 2.4702985, 5.618288, 3.7483382],
    },
}
TEST_POINTS = 10_000


def sum_of_sines(x: torch.Tensor, kappa: list[float], phi: list[float]) -> torch.Tensor:
    """``y [N, 1]`` for ``x [N, 1]`` (computed in float64, returned in x's dtype)."""
    x64 = x.double()
    y = torch.zeros_like(x64)
    for k, p in zip(kappa, phi):
        y += torch.sin(2 * math.pi * k * x64 + p)
    return y.to(x.dtype)


class FunctionTask:
    """Regression of data given as splits of ``x [N, D]`` and ``y [N, C]``: ``train``
    required, ``val`` and ``test`` optional; the same interface as RegressionTask without an
    image. ``shape`` is ``[N, C]`` of the test split (else of the train split)."""

    name = "approx"

    def __init__(self, splits: dict[str, Split], description: str):
        if "train" not in splits:
            raise InputError("a task needs a 'train' split")
        self.splits = splits
        self.description = description
        last = splits.get("test", splits["train"])
        self.shape = (last.x.shape[0], last.y.shape[1])

    @property
    def in_dim(self) -> int:
        return self.splits["train"].x.shape[1]

    @property
    def out_dim(self) -> int:
        return self.splits["train"].y.shape[1]

    @classmethod
    def setting(
        cls, setting: int, *, J: int = 10, device: torch.device | str = "cpu"
    ) -> FunctionTask:
        """Setting 1 or 2 of PROTOCOL 6 with 2**J training points."""
        if setting not in SETTINGS:
            raise ValueError(f"setting must be one of {sorted(SETTINGS)}, got {setting!r}")
        kappa, phi = SETTINGS[setting]["kappa"], SETTINGS[setting]["phi"]
        n = 2**J
        xs = {
            "train": torch.linspace(0, 1, n, dtype=torch.float64),
            "val": torch.rand(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64),
            "test": torch.linspace(0, 1, TEST_POINTS, dtype=torch.float64),
        }
        splits = {}
        for name, x in xs.items():
            x = x[:, None]
            y = sum_of_sines(x, kappa, phi)
            splits[name] = Split(x.float().to(device), y.float().to(device), (x.shape[0], 1))
        return cls(splits, f"setting {setting}: sum of sines, kappa={kappa}")

"""The even/odd split lattice of an image, and the image regression task read band by band.

``SPLIT_LATTICE`` places each split's pixels (PROTOCOL 1.1: train = even rows and columns,
validation = odd rows and columns, test = every pixel); ``lattice_coords`` gives any run of a
split's coordinates without a grid, so a shard (``sharded_splits``) or a streamed image
(``StreamedRegressionTask``) never builds the whole one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..distributed import World, current
from .base import Split

# Where each split's pixels lie: (first row, row step, first column, column step).
SPLIT_LATTICE = {"train": (0, 2, 0, 2), "val": (1, 2, 1, 2), "test": (0, 1, 0, 1)}


def _lattice_grid(shape: tuple[int, ...], name: str) -> tuple[int, int]:
    """``(rows, cols)`` of split ``name`` of an ``[H, W, C]`` image."""
    r0, rs, c0, cs = SPLIT_LATTICE[name]
    return len(range(r0, shape[0], rs)), len(range(c0, shape[1], cs))


def _lattice_rows(shape: tuple[int, ...], name: str) -> int:
    rows, cols = _lattice_grid(shape, name)
    return rows * cols


def split_rows(height: int, width: int) -> dict[str, int]:
    """Rows of each split of a ``height x width`` image."""
    return {name: _lattice_rows((height, width), name) for name in SPLIT_LATTICE}


def lattice_coords(shape, name: str, start: int, stop: int, device=None) -> torch.Tensor:
    """``[stop - start, 2]`` fp32 coordinates (column / W, row / H) of split ``name``'s pixels
    ``start..stop-1`` in row-major order: the values ``coordinate_grid`` holds there."""
    r0, rs, c0, cs = SPLIT_LATTICE[name]
    cols = _lattice_grid(shape, name)[1]
    index = torch.arange(start, stop, dtype=torch.int64, device=device)
    rows = (r0 + (index // cols) * rs).double() / shape[0]
    columns = (c0 + (index % cols) * cs).double() / shape[1]
    return torch.stack([columns, rows], dim=1).to(torch.float32)


def _split_targets(band, shape, name: str, start: int, stop: int, band_rows: int):
    """Targets ``[stop - start, C]`` fp32 of split ``name``'s pixels ``start..stop-1``, read
    ``band_rows`` split rows at a time: ``band(top, bottom, row_step, col0, col_step)`` gives
    image rows ``top:bottom:row_step`` and columns ``col0::col_step`` as ``[r, c, C]``."""
    r0, rs, c0, cs = SPLIT_LATTICE[name]
    cols, channels = _lattice_grid(shape, name)[1], shape[2]
    first, end = start // cols, -(-stop // cols)
    y = torch.empty((end - first) * cols, channels)
    for k in range(first, end, band_rows):
        top = r0 + k * rs
        pixels = band(top, top + min(band_rows, end - k) * rs, rs, c0, cs)
        at = (k - first) * cols
        y[at : at + pixels.shape[0] * cols] = torch.from_numpy(
            np.ascontiguousarray(pixels.reshape(-1, channels))
        )
    skip = start - first * cols
    return y if skip == 0 and y.shape[0] == stop - start else y[skip : skip + stop - start].clone()


def sharded_splits(pixels: np.ndarray, world: World, device) -> dict[str, Split]:
    """This rank's rows of every split of ``pixels [H, W, C]`` (the whole grid never made)."""

    def band(top, bottom, rs, c0, cs):
        return pixels[top:bottom:rs, c0::cs].astype(np.float32)

    splits = {}
    for name in SPLIT_LATTICE:
        start, stop = world.check_rows(name, _lattice_rows(pixels.shape, name))
        x = lattice_coords(pixels.shape, name, start, stop)
        y = _split_targets(band, pixels.shape, name, start, stop, band_rows=256)
        splits[name] = Split(x.to(device), y.to(device), _lattice_grid(pixels.shape, name))
    return splits


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
    coordinate grid; only the targets ``[N, C]`` fp32 are kept. ``world`` as RegressionTask's:
    a rank reads only the bands of its rows and holds only their targets."""

    name = "regression"

    def __init__(
        self,
        image,
        device: torch.device | str = "cpu",
        band_rows: int = 256,
        world: World | None = None,
    ):
        self.shape, self.device = tuple(image.shape), torch.device(device)
        self.world = current() if world is None else world
        self.splits: dict[str, LazySplit] = {}
        self.totals: dict[str, int] = {}
        self._first: dict[str, int] = {}
        for name, lattice in SPLIT_LATTICE.items():
            total = _lattice_rows(self.shape, name)
            start, stop = self.world.check_rows(name, total)
            y = _split_targets(image.band, self.shape, name, start, stop, band_rows)
            grid = _lattice_grid(self.shape, name)
            self.splits[name] = LazySplit(y.to(self.device), grid, lattice)
            self.totals[name], self._first[name] = total, start

    @property
    def in_dim(self) -> int:
        return 2

    @property
    def out_dim(self) -> int:
        return self.shape[2]

    def coords(self, split: str, start: int, stop: int) -> torch.Tensor:
        """``[stop - start, 2]`` fp32 coordinates (column / W, row / H) of this rank's pixels
        ``start..stop-1`` of ``split`` in row-major order: the values RegressionTask's grid
        holds."""
        first = self._first[split]
        return lattice_coords(self.shape, split, first + start, first + stop, self.device)

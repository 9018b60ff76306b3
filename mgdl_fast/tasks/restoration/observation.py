"""Denoising and deblurring data (PROTOCOL 1.2, 1.3): a clean image, its degraded observation,
and the full coordinate grid the network reads (no train/validation split).

    denoise: y = x + noise * n          deblur: y = K x + noise * n,   n ~ N(0, 1) per pixel

``noise`` is the standard deviation in [0, 1] pixel units (the CLI takes it in /255 units) and
``K`` the Gaussian blur of ``operators.py``. The noise comes from torch's generator seeded
with ``seed``: the authors drew theirs with JAX's ``PRNGKey(0)``, which cannot be reproduced
here, so observations match theirs in distribution and their PSNR within a few hundredths of a
dB (PROTOCOL 1.4 lists JAX's values).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ...distributed import World, current
from ...errors import InputError
from ...grid import coordinate_grid, grid_rows
from ..base import Split
from .operators import blur, gaussian_kernel_1d


class InverseTask:
    """Restore ``pixels [H, W, C]`` from an observation degraded by blur and/or noise.

    Attributes: ``clean`` and ``observed`` ``[C, H, W]`` fp32 on the device, ``kernel`` the 1D
    blur kernel ``[S]`` (None for denoising), ``observed_psnr`` the observation's PSNR against
    the clean image (peak 1), and one split ``train`` with the grid ``x [H*W, 2]`` and the
    observation ``y [H*W, C]``.

    ``world`` shards the ``train`` split's rows over ranks (None: the default process group's
    ranks when torch.distributed is initialised): a rank's split holds its rows ``[n_r, ...]``
    only, ``totals["train"]`` is H*W. ``clean`` and ``observed`` stay whole on every rank: the
    TV loss couples neighbouring pixels and is computed in image space on every rank.
    """

    def __init__(
        self,
        pixels: np.ndarray,
        *,
        noise: float,
        blur_sigma: float | None = None,
        seed: int = 0,
        device: torch.device | str = "cpu",
        world: World | None = None,
    ):
        if not (math.isfinite(noise) and noise >= 0):
            raise InputError(f"noise level must be a finite number >= 0, got {noise!r}")
        if blur_sigma is None and noise == 0:
            raise InputError("denoising needs a noise level > 0")
        height, width, channels = pixels.shape
        clean = torch.as_tensor(pixels, dtype=torch.float64).permute(2, 0, 1).contiguous()
        self.name = "denoise" if blur_sigma is None else "deblur"
        self.noise, self.blur_sigma, self.seed = float(noise), blur_sigma, seed
        observed = clean
        kernel = None
        if blur_sigma is not None:
            kernel = gaussian_kernel_1d(blur_sigma)
            observed = blur(clean, kernel)
        gen = torch.Generator().manual_seed(seed)
        observed = observed + noise * torch.randn(clean.shape, generator=gen, dtype=torch.float64)
        self.observed_psnr = -10.0 * math.log10(torch.mean((observed - clean) ** 2).item())
        self.shape = (height, width, channels)
        self.clean = clean.float().to(device)
        self.observed = observed.float().to(device)
        self.kernel = None if kernel is None else kernel.float().to(device)
        self.world = current() if world is None else world
        self.totals = {"train": height * width}
        if self.world.sharded:
            start, stop = self.world.check_rows("train", height * width)
            grid = grid_rows(height, width, start // width, -(-stop // width), device)
            grid = grid[start - start // width * width :][: stop - start].clone()
            y = self.observed.permute(1, 2, 0).reshape(-1, channels)[start:stop].clone()
            self.splits = {"train": Split(grid, y, (height, width))}
            return
        grid = coordinate_grid(height, width).reshape(-1, 2).to(device)
        y = self.observed.permute(1, 2, 0).reshape(-1, channels).contiguous()
        self.splits = {"train": Split(grid, y, (height, width))}

    @property
    def in_dim(self) -> int:
        return 2

    @property
    def out_dim(self) -> int:
        return self.shape[2]

    def describe(self) -> dict:
        """What the observation is, for metrics.json."""
        return {
            "task": self.name,
            "noise": self.noise,
            "noise_255": self.noise * 255.0,
            "blur_sigma": self.blur_sigma,
            "kernel_size": None if self.kernel is None else int(self.kernel.shape[0]),
            "noise_seed": self.seed,
            "observed_psnr": self.observed_psnr,
        }

"""Benchmark sizes and the roofline model: the only place bench files take sizes from.

GPU: N = 256^2 .. 2048^2 training pixels, W = 128, 2 and 3 hidden layers, grade 1 (D = 2
coordinates, fp32) and later grades (D = W cached features, bf16); ``MGDL_FAST_BENCH_SHAPES=
headline`` keeps the shapes the issues' targets name (what bench/gpu_suite.sh times). Without a
GPU a single tiny smoke shape per grade kind checks that the benchmark code runs (CPU CI).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

GPU_SIDES = (256, 512, 1024, 2048)
WIDTH = 128
LAYERS = (2, 3)
SMOKE = (16, 32, 2)  # side, width, layers
# H100 SXM ceilings (../shared/PERF.md section 2): dense bf16 tensor core and HBM, datasheet.
PEAK_BF16_FLOPS = 989e12
PEAK_HBM_BYTES = 3.35e12


@dataclass(frozen=True)
class EpochShape:
    """One grade's full-batch training problem: ``side^2`` pixels, block [D, W x L, 1]."""

    side: int
    in_dim: int
    width: int
    layers: int
    out_dim: int = 1

    @property
    def n(self) -> int:
        return self.side * self.side

    @property
    def grade(self) -> str:
        return "g1" if self.in_dim <= 3 else "g2"

    def __str__(self) -> str:
        return f"{self.grade}-{self.side}sq-W{self.width}-L{self.layers}"

    def layer_dims(self) -> list[tuple[int, int]]:
        dims = [self.in_dim] + [self.width] * self.layers
        return list(zip(dims, dims[1:] + [self.out_dim]))

    def training_flops_per_pixel(self) -> int:
        """Forward + weight gradients + input gradients of every layer but the first (whose
        inputs are frozen): 2 * in * out each (PERF.md section 1)."""
        per_layer = [2 * i * o for i, o in self.layer_dims()]
        return 2 * sum(per_layer) + sum(per_layer[1:])

    def bytes_per_pixel(self) -> int:
        """Inputs (fp32 coordinates or bf16 features) and the fp32 target, read once."""
        return self.in_dim * (4 if self.grade == "g1" else 2) + 4 * self.out_dim

    def roofline_pixels_per_s(self) -> float:
        """The bf16 roofline: min(compute, memory) limit on training pixels per second."""
        return min(
            PEAK_BF16_FLOPS / self.training_flops_per_pixel(),
            PEAK_HBM_BYTES / self.bytes_per_pixel(),
        )


# The targets' shapes: grade >= 2 and grade 1 at 1024^2 (2 hidden), grade >= 2 with 3 hidden
# (the denoising networks), and grade >= 2 at 256^2, where fixed per-epoch costs dominate.
HEADLINE = (
    EpochShape(1024, WIDTH, WIDTH, 2),
    EpochShape(1024, 2, WIDTH, 2),
    EpochShape(1024, WIDTH, WIDTH, 3),
    EpochShape(256, WIDTH, WIDTH, 2),
)


def epoch_shapes(gpu: bool) -> list[EpochShape]:
    """Every benchmarked shape: the GPU grid (or its headline subset), or the CPU smoke shapes."""
    if not gpu:
        side, width, layers = SMOKE
        return [EpochShape(side, d, width, layers) for d in (2, width)]
    if os.environ.get("MGDL_FAST_BENCH_SHAPES") == "headline":
        return list(HEADLINE)
    return [
        EpochShape(side, d, WIDTH, layers)
        for layers in LAYERS
        for d in (2, WIDTH)
        for side in GPU_SIDES
    ]

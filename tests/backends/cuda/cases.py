"""The GPU test cases of test_ops.py, shared with the plan replay (plan_replay.py), which
follows the engines those tests bind and launch in collection order."""

from __future__ import annotations

import pytest
import torch

# (N, D, W, L, C): awkward N, grade-1 (D <= 3) and later-grade (D == W) inputs, all widths
SHAPES = [
    (1, 2, 32, 1, 1),
    (17, 3, 64, 2, 3),
    (255, 2, 128, 2, 1),
    (1000, 128, 128, 2, 1),
    (1000, 128, 128, 3, 2),
    (4099, 2, 128, 3, 4),
    (300, 32, 32, 3, 1),
    (129, 64, 64, 1, 2),
    (200, 2, 256, 2, 1),
    (77, 256, 256, 1, 3),
]
DTYPES = (torch.float32, torch.bfloat16)
# Every shape with both input dtypes, shape-major: the order pytest runs them in.
CASES = [(dims, dtype) for dims in SHAPES for dtype in DTYPES]
# The blocks of the tests that are not parametrized, in the order test_ops.py defines them.
BF16_FEATURES = (513, 128, 128, 2, 1)
DETERMINISM = (20_000, 128, 128, 2, 1)
NO_PLANNING = (1000, 2, 128, 2, 1)
GRAPH = (4099, 128, 128, 2, 1)
SECOND_FIT = ((4096, 2, 128, 2, 1), (4096, 128, 128, 2, 1))
AUTOGRAD = (500, 2, 128, 2, 1)
OPTIMIZER = (10, 2, 128, 2, 1)
# fit_regression on a 48 x 40 image, 2 grades of width 64 and 2 hidden layers.
TRAINER_GRADES = ((2, 64, 2, 1), (64, 64, 2, 1))


def case_id(case) -> str:
    (n, d, w, layers, c), dtype = case
    return f"N{n}-D{d}-W{w}-L{layers}-C{c}-{str(dtype).removeprefix('torch.')}"


# Tests of what a machine without a GPU reports.
no_gpu_only = pytest.mark.skipif(
    torch.cuda.is_available(), reason="checks the errors raised on a machine without a GPU"
)

"""The Triton interpreter switch for CPU smoke runs of the benchmarks (as in tests/)."""

from __future__ import annotations

import os

import torch

# Must be set before any @triton.jit function is created (kernels import lazily).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

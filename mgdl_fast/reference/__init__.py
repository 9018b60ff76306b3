"""The reference backend: plain PyTorch on any device, the oracle and the fallback.

Every backend module exposes the same names: ``NAME``, ``AUTO_DEVICE_TYPES``,
``unavailable_reason()``, ``unsupported_reasons(op, x, params)`` and the ops ``block_fwd``,
``block_bwd``, ``grade_step``, ``adam_step``, ``gd_step``.
"""

from __future__ import annotations

import torch

from ..block import BlockParams
from .block_bwd import block_bwd
from .block_fwd import block_fwd
from .functional import block_apply
from .grade_step import grade_step
from .optim import adam_step, gd_step

NAME = "reference"
AUTO_DEVICE_TYPES = ("cpu", "cuda")

__all__ = [
    "AUTO_DEVICE_TYPES",
    "NAME",
    "adam_step",
    "block_apply",
    "block_bwd",
    "block_fwd",
    "gd_step",
    "grade_step",
    "unavailable_reason",
    "unsupported_reasons",
]


def unavailable_reason() -> str | None:
    """The reference backend is always available."""
    return None


def unsupported_reasons(
    op: str, x: torch.Tensor | None = None, params: BlockParams | None = None
) -> list[str]:
    """The reference serves every shape, dtype and device torch supports."""
    return []

"""The feature cache: what each grade reads and where a frozen grade's features go, in one room.

- ``inputs.py``: what a grade reads per split, in chunks: ``FeatureCache`` (tensors in memory,
  the default), ``RecomputedFeatures`` (recomputed through the frozen grades on each access, to
  measure what the cache saves), ``GeneratedInputs`` (grade 1's coordinates made per chunk, for
  streamed runs), ``MemoryStore`` and ``freeze_grade`` (a grade's features computed once);
- ``stores.py``: ``DiskFeatures`` and ``HostFeatures``, for features that do not fit where they
  are computed (files read by chunks; pinned host memory staged to the GPU);
- ``freeze.py``: the choice among them for a run (``grade_inputs``, ``Freezer``, ``WorkDir``).
"""

from .freeze import Freezer, WorkDir, grade_inputs
from .inputs import (
    Chunks,
    FeatureCache,
    GeneratedInputs,
    MemoryStore,
    RecomputedFeatures,
    freeze_grade,
)
from .stores import DiskFeatures, HostFeatures

__all__ = [
    "Chunks",
    "DiskFeatures",
    "FeatureCache",
    "Freezer",
    "GeneratedInputs",
    "HostFeatures",
    "MemoryStore",
    "RecomputedFeatures",
    "WorkDir",
    "freeze_grade",
    "grade_inputs",
]

"""Grade inputs: coordinates, cached features of the newest frozen grade, or (for comparison
only) features recomputed through every frozen grade on each access."""

from __future__ import annotations

import torch

from .block import BlockParams
from .dispatch import resolve
from .model import DEFAULT_CHUNK, MultiGradeModel


class FeatureCache:
    """Per-split input tensors ``[N, D]`` for the grade being trained (coordinates or features)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self._tensors = dict(tensors)

    def get(self, split: str) -> torch.Tensor:
        return self._tensors[split]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tensors.values())

    def release(self) -> None:
        """Drop the tensors so their memory can be reused by the next grade's cache."""
        self._tensors.clear()


class RecomputedFeatures:
    """Inputs of grade k+1 recomputed from coordinates through frozen grades 1..k on every
    ``get``: what training costs without the cache (used to measure the cache's benefit)."""

    def __init__(self, model: MultiGradeModel, coords: dict[str, torch.Tensor]):
        self._model, self._coords = model, coords

    def get(self, split: str) -> torch.Tensor:
        if len(self._model) == 0:
            return self._coords[split]
        return self._model.features(self._coords[split])

    def release(self) -> None:
        """Nothing is held between calls."""


@torch.no_grad()
def freeze_grade(
    params: BlockParams,
    inputs: FeatureCache | RecomputedFeatures,
    splits: tuple[str, ...],
    feature_dtype: torch.dtype,
    *,
    backend: str | None = None,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[FeatureCache, dict[str, torch.Tensor]]:
    """One chunked forward of a just-trained grade over every split.

    Returns the new cache (its last hidden features ``[N, W]`` in ``feature_dtype``) and its
    outputs ``[N, C]`` per split, which the task subtracts from the residual targets.
    """
    features, outputs = {}, {}
    for split in splits:
        x = inputs.get(split)
        _, fwd = resolve("block_fwd", x, params, backend=backend)
        feats = torch.empty(x.shape[0], params.shape.width, dtype=feature_dtype, device=x.device)
        out = torch.empty(x.shape[0], params.shape.out_dim, device=x.device)
        for start in range(0, x.shape[0], chunk_size):
            stop = start + chunk_size
            fwd(x[start:stop], params, out=out[start:stop], features_out=feats[start:stop])
        features[split], outputs[split] = feats, out
    return FeatureCache(features), outputs

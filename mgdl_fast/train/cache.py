"""Grade inputs: coordinates, cached features of the newest frozen grade, or (for comparison
only) features recomputed through every frozen grade on each access."""

from __future__ import annotations

import torch

from ..backends.engine import Engine
from ..block import BlockParams
from .model import DEFAULT_CHUNK


class FeatureCache:
    """Per-split input tensors ``[N, D]`` for the grade being trained (coordinates or features)."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self._tensors = dict(tensors)

    def get(self, split: str) -> torch.Tensor:
        return self._tensors[split]

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self._tensors.values())).dtype

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tensors.values())

    def rows(self, split: str) -> int:
        return self._tensors[split].shape[0]

    def release(self) -> None:
        """Drop the tensors so their memory can be reused by the next grade's cache."""
        self._tensors.clear()


class RecomputedFeatures:
    """Inputs of grade k+1 recomputed from coordinates through frozen grades 1..k on every
    ``get``: what training costs without the cache (used to measure the cache's benefit).

    Each frozen grade keeps the engine it was trained with; the features of every split are
    recomputed into buffers allocated once (``feature_dtype``, as the cache would hold them).
    """

    def __init__(self, coords: dict[str, torch.Tensor], feature_dtype: torch.dtype):
        self._coords, self._dtype = coords, feature_dtype
        self._grades: list[tuple[BlockParams, Engine]] = []
        self._buffers: dict[str, list[torch.Tensor]] = {}

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype if self._grades else torch.float32

    def rows(self, split: str) -> int:
        return self._coords[split].shape[0]

    def add_grade(self, params: BlockParams, engine: Engine) -> None:
        """Chain a just-frozen grade (and the engine that trained it) onto the inputs."""
        self._grades.append((params, engine))
        width, device = params.shape.width, params.flat.device
        for split, x in self._coords.items():
            chunk = min(engine.rows, x.shape[0])
            # Two feature buffers per split (read one, write the other) and one output chunk.
            self._buffers[split] = [
                torch.empty(x.shape[0], width, dtype=self._dtype, device=device),
                torch.empty(x.shape[0], width, dtype=self._dtype, device=device),
                torch.empty(chunk, params.shape.out_dim, device=device),
            ]

    @torch.no_grad()
    def get(self, split: str) -> torch.Tensor:
        x = self._coords[split]
        if not self._grades:
            return x
        bufs = self._buffers[split]
        for k, (params, engine) in enumerate(self._grades):
            dest = bufs[k % 2]
            forward_chunked(engine, params, x, bufs[2], dest)
            x = dest
        return x

    def release(self) -> None:
        """Nothing is held between calls but the buffers, which later grades reuse."""


def forward_chunked(
    engine: Engine,
    params: BlockParams,
    x: torch.Tensor,
    out: torch.Tensor,
    features: torch.Tensor | None = None,
) -> None:
    """``engine.forward`` over ``x [N, D]`` in chunks of at most ``engine.rows`` rows: the
    output into ``out`` (``[N, C]``, or one ``[chunk, C]`` scratch chunk when only the
    ``features [N, W]`` are wanted)."""
    chunk = min(engine.rows, x.shape[0])
    whole = out.shape[0] == x.shape[0]
    for start in range(0, x.shape[0], chunk):
        stop = min(start + chunk, x.shape[0])
        dest = out[start:stop] if whole else out[: stop - start]
        feats = None if features is None else features[start:stop]
        engine.forward(x[start:stop], params.flat, dest, feats)


@torch.no_grad()
def freeze_grade(
    engine: Engine,
    params: BlockParams,
    inputs: FeatureCache | RecomputedFeatures,
    splits: tuple[str, ...],
    feature_dtype: torch.dtype,
) -> tuple[FeatureCache, dict[str, torch.Tensor]]:
    """One chunked forward of a just-trained grade over every split, with its engine.

    Returns the new cache (its last hidden features ``[N, W]`` in ``feature_dtype``) and its
    outputs ``[N, C]`` per split, which the objective absorbs.
    """
    features, outputs = {}, {}
    for split in splits:
        x = inputs.get(split)
        feats = torch.empty(x.shape[0], params.shape.width, dtype=feature_dtype, device=x.device)
        out = torch.empty(x.shape[0], params.shape.out_dim, device=x.device)
        forward_chunked(engine, params, x, out, feats)
        features[split], outputs[split] = feats, out
    return FeatureCache(features), outputs


__all__ = ["DEFAULT_CHUNK", "FeatureCache", "RecomputedFeatures", "forward_chunked", "freeze_grade"]

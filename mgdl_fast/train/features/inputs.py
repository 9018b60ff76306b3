"""Grade inputs: what a grade reads per split, in chunks.

- ``FeatureCache``: tensors in memory (coordinates for grade 1, then each frozen grade's last
  hidden features), the default;
- ``RecomputedFeatures``: recomputed through every frozen grade on each access (only to
  measure what the cache saves);
- ``GeneratedInputs``: grade 1's coordinates (encoded, if the model encodes them) made per
  chunk, never the whole grid, for streamed runs;
- ``DiskFeatures`` (stores.py): a frozen grade's features in files, read chunk by chunk.

Every kind serves ``chunks(split, size)``: ``(start row, x [n, D])`` pairs in row order, each
tensor valid until the next one is drawn. A split that fits in one chunk is one view of the
whole tensor, so in-memory runs compute exactly what full-batch calls would.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

from ...backends.engine import Engine
from ...block import BlockParams
from ..model import DEFAULT_CHUNK

Chunks = Iterator[tuple[int, torch.Tensor]]


class FeatureCache:
    """Per-split input tensors ``[N, D]`` in memory for the grade being trained."""

    def __init__(self, tensors: dict[str, torch.Tensor]):
        self._tensors = dict(tensors)

    def get(self, split: str) -> torch.Tensor:
        return self._tensors[split]

    def chunks(self, split: str, size: int) -> Chunks:
        x = self._tensors[split]
        for start in range(0, x.shape[0], size):
            yield start, x[start : start + size]

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self._tensors.values())).dtype

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tensors.values())

    def rows(self, split: str) -> int:
        return self._tensors[split].shape[0]

    def release(self, split: str | None = None) -> None:
        """Drop one split's tensor (or all) so its memory can be reused."""
        if split is None:
            self._tensors.clear()
        else:
            self._tensors.pop(split, None)


class GeneratedInputs:
    """Grade 1's inputs made per chunk: ``make(split, start, stop, out=None) -> x [stop -
    start, D]`` (the task's coordinates, encoded when the model has an encoding).

    With ``reuse_width`` (D of an encoding), ``chunks`` has ``make`` write every chunk into one
    reused ``[size, D]`` buffer, so a streamed epoch allocates no encoded chunks: a chunk is
    valid until the next one is made. ``get`` always returns an array of its own.
    """

    def __init__(
        self,
        rows: dict[str, int],
        make: Callable[..., torch.Tensor],
        reuse_width: int | None = None,
        device: torch.device | str = "cpu",
    ):
        self._rows, self._make = dict(rows), make
        self._reuse_width, self._device = reuse_width, device
        self._buffer: torch.Tensor | None = None

    def _chunk_buffer(self, size: int) -> torch.Tensor | None:
        if self._reuse_width is None:
            return None
        if self._buffer is None or self._buffer.shape[0] < size:
            self._buffer = torch.empty(size, self._reuse_width, device=self._device)
        return self._buffer

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def rows(self, split: str) -> int:
        return self._rows[split]

    def chunks(self, split: str, size: int) -> Chunks:
        buffer = self._chunk_buffer(min(size, self._rows[split]))
        for start in range(0, self._rows[split], size):
            stop = min(start + size, self._rows[split])
            out = None if buffer is None else buffer[: stop - start]
            yield start, self._make(split, start, stop, out=out)

    def get(self, split: str) -> torch.Tensor:
        return self._make(split, 0, self._rows[split])

    def release(self, split: str | None = None) -> None:
        """Nothing is held."""


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

    def chunks(self, split: str, size: int) -> Chunks:
        x = self.get(split)
        for start in range(0, x.shape[0], size):
            yield start, x[start : start + size]

    def release(self, split: str | None = None) -> None:
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


class MemoryStore:
    """Where a freeze writes the next grade's features when they fit in memory."""

    def __init__(self, rows: dict[str, int], width: int, dtype: torch.dtype, device):
        self._tensors = {
            split: torch.empty(n, width, dtype=dtype, device=device) for split, n in rows.items()
        }

    def write(self, split: str, start: int, features: torch.Tensor) -> None:
        self._tensors[split][start : start + features.shape[0]].copy_(features)

    def writable(self, split: str, start: int, n: int) -> torch.Tensor | None:
        """A view the engine may write the features into directly (no copy)."""
        return self._tensors[split][start : start + n]

    def finish(self) -> FeatureCache:
        return FeatureCache(self._tensors)


@torch.no_grad()
def freeze_grade(
    engine: Engine,
    params: BlockParams,
    inputs,
    splits: tuple[str, ...],
    store,
) -> tuple[object, dict[str, torch.Tensor], torch.Tensor]:
    """One chunked forward of a just-trained grade over every split, with its engine.

    ``store`` receives the next grade's inputs (its last hidden features ``[N, W]``; a
    ``MemoryStore`` or a ``DiskFeatures`` writer). Returns the new inputs, the grade's outputs
    ``[N, C]`` per split (which the objective absorbs), and the largest activation of each
    last-layer unit on the train split ``[W]`` (dead units have 0). A split's old inputs are
    released as soon as its features are made, so the peak holds one copy plus one split.
    """
    outputs, largest = {}, None
    device, shape = params.flat.device, params.shape
    scratch = torch.empty(engine.rows, shape.width, dtype=torch.float32, device=device)
    for split in splits:
        n = inputs.rows(split)
        out = torch.empty(n, shape.out_dim, device=device)
        for start, x in inputs.chunks(split, engine.rows):
            rows = x.shape[0]
            direct = store.writable(split, start, rows)
            feats = direct if direct is not None else scratch[:rows]
            engine.forward(x, params.flat, out[start : start + rows], feats)
            if direct is None:
                store.write(split, start, feats)
            if split == "train":
                top = feats.amax(dim=0).float()
                largest = top if largest is None else torch.maximum(largest, top)
        outputs[split] = out
        inputs.release(split)
    assert largest is not None
    return store.finish(), outputs, largest


__all__ = [
    "DEFAULT_CHUNK",
    "FeatureCache",
    "GeneratedInputs",
    "MemoryStore",
    "RecomputedFeatures",
    "forward_chunked",
    "freeze_grade",
]

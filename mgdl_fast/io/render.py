"""Rendering a model onto an ``H x W`` grid band by band, with progress, into files.

Coordinates are made per band of rows (``grid.grid_rows``), never for the whole grid, and each
band goes through every grade with engines bound once. Bands go straight to their writers, so
memory stays bounded by a band whatever the size: ``.npy`` (appended after its header),
tiled float32 TIFF (BigTIFF when large; tifffile pulls the tiles as they are rendered) and
``.zarr`` (chunked stores). PNG needs the whole image in memory and is refused when that is
above the available memory. Every output is written to a temporary name and renamed
(``io.sinks``); a non-finite band stops the render and nothing of it is kept.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..grid import grid_rows
from ..train.model import MultiGradeModel
from ..train.progress import Progress
from .sinks import SINKS, TILE, Sink, Tiff, Zarr, check_output

# Past this many bytes a TIFF needs 64-bit offsets.
BIGTIFF_BYTES = 2**32 - 2**25


def _tiles(band: np.ndarray) -> Iterator[np.ndarray]:
    """A ``[TILE, W, C]`` band as TIFF tiles, left to right, zero-padded to full tiles."""
    rows, width, channels = band.shape
    for left in range(0, width, TILE):
        tile = np.zeros((TILE, TILE, channels), dtype=np.float32)
        piece = band[:, left : left + TILE]
        tile[:rows, : piece.shape[1]] = piece
        yield tile if channels > 1 else tile[..., 0]


@torch.no_grad()
def render_to(
    model: MultiGradeModel,
    height: int,
    width: int,
    paths: list[Path],
    *,
    chunk_size: int = 1 << 16,
    progress: Progress | None = None,
    backend: str | None = None,
    overwrite: bool = False,
) -> None:
    """Render into every file of ``paths`` (formats from their extensions), band by band.
    ``overwrite``: an existing output may be replaced (see ``io.sinks``). A band that is not
    finite stops the render; nothing is left of a failed render: every output is complete
    before the first is renamed into place (only a failing rename among those leaves the
    outputs renamed before it)."""
    for path in paths:
        check_output(path, overwrite)
    shape = (height, width, model.grades[-1].shape.out_dim)
    engines = model.bind(min(chunk_size, height * width), backend=backend)
    progress = progress or Progress(quiet=True)

    def bands() -> Iterator[np.ndarray]:
        progress.start(f"render {height}x{width}", height, unit="row")
        for top in range(0, height, TILE):
            bottom = min(height, top + TILE)
            coords = grid_rows(height, width, top, bottom, device=model.device)
            pixels = model.predict(coords, chunk_size=chunk_size, engines=engines)
            band = pixels.reshape(bottom - top, width, shape[2]).cpu().numpy()
            if not np.isfinite(band).all():
                raise InputError(
                    f"the model's output is NaN or infinite in rows {top}..{bottom - 1} (its "
                    "weights or scales overflow float32); nothing was written"
                )
            for sink in sinks:
                sink.write(top, band)
            progress.advance(bottom - top)
            progress.show({})
            # Last: tifffile stops drawing once it has every tile.
            yield band

    tiffs = [Tiff(p, shape) for p in paths if p.suffix.lower() in (".tif", ".tiff")]
    sinks: list[Sink] = []
    try:
        for p in paths:
            if p.suffix.lower() in SINKS:
                sinks.append(SINKS[p.suffix.lower()](p, shape))
        if tiffs:
            big = math.prod(shape) * 4 > BIGTIFF_BYTES
            tiffs[0].draw((tile for band in bands() for tile in _tiles(band)), big)
            for extra in tiffs[1:]:
                assert tiffs[0].tmp is not None
                extra.copy(tiffs[0].tmp)
        else:
            for _ in bands():
                pass
        progress.finish()
        for sink in sinks:
            sink.finish()
        # Every output is complete: only now does any go into place. Stores first: replacing
        # one is the step that can still be refused.
        for output in sorted((*sinks, *tiffs), key=lambda o: not isinstance(o, Zarr)):
            output.commit()
    except BaseException:
        for output in (*sinks, *tiffs):
            with contextlib.suppress(OSError):  # the first failure is the one to report
                output.abort()
        raise


__all__ = ["render_to"]

"""Rendering a model onto an ``H x W`` grid band by band, with progress, into a file.

Coordinates are made per band of rows (``grid.grid_rows``), never for the whole grid, and each
band goes through every grade with engines bound once. ``.npy`` outputs are written into a
memory map, so they never need the whole image in memory; PNG and TIFF outputs are assembled
in memory and written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
import torch

from ..errors import InputError
from ..grid import grid_rows
from ..train.model import MultiGradeModel
from ..train.progress import Progress
from . import atomic
from .images import save_png

FORMATS = {
    ".png": "8-bit PNG (clipped to [0, 1])",
    ".tif": "float32 TIFF",
    ".tiff": "float32 TIFF",
    ".npy": "float32 NumPy array",
}


def check_output(path: Path) -> None:
    """Refuse, with one line, an output the renderer cannot write."""
    if path.suffix.lower() not in FORMATS:
        kinds = ", ".join(FORMATS)
        suffix = path.suffix or "(none)"
        raise InputError(f"--out {path}: unsupported extension {suffix}; use {kinds}")
    if not path.parent.is_dir():
        raise InputError(f"--out {path}: directory {path.parent} does not exist")


@torch.no_grad()
def render_to(
    model: MultiGradeModel,
    height: int,
    width: int,
    path: Path,
    *,
    chunk_size: int = 1 << 16,
    progress: Progress | None = None,
    backend: str | None = None,
) -> np.ndarray | None:
    """Render into ``path`` (format from its extension); returns the image ``[H, W, C]``
    unless it was written to a memory map (``.npy``)."""
    check_output(path)
    channels = model.grades[-1].shape.out_dim
    band = max(1, min(height, chunk_size // width))
    engines = model.bind(band * width, backend=backend)
    memmap = path.suffix.lower() == ".npy"
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    shape = (height, width, channels)
    image: np.ndarray = (
        np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        if memmap
        else np.empty(shape, dtype=np.float32)
    )
    progress = progress or Progress(quiet=True)
    progress.start(f"render {height}x{width}", height)
    for top in range(0, height, band):
        bottom = min(height, top + band)
        coords = grid_rows(height, width, top, bottom, device=model.device)
        pixels = model.predict(coords, chunk_size=coords.shape[0], engines=engines)
        image[top:bottom] = pixels.reshape(bottom - top, width, channels).cpu().numpy()
        progress.advance(bottom - top)
        progress.show({"rows": f"{bottom}/{height}"})
    progress.finish()
    if isinstance(image, np.memmap):
        image.flush()
        del image
        atomic.atomic_write(path, lambda out: Path(tmp).replace(out))
        return None
    if path.suffix.lower() == ".png":
        atomic.atomic_write(path, lambda out: save_png(out, image))
    else:
        atomic.atomic_write(path, lambda out: tifffile.imwrite(out, image))
    return image

"""Rendering a model onto an ``H x W`` grid band by band, with progress, into files.

Coordinates are made per band of rows (``grid.grid_rows``), never for the whole grid, and each
band goes through every grade with engines bound once. Bands go straight to their writers, so
memory stays bounded by a band whatever the size: ``.npy`` (appended after its header),
tiled float32 TIFF (BigTIFF when large; tifffile pulls the tiles as they are rendered) and
``.zarr`` (chunked stores). PNG needs the whole 8-bit image in memory and is refused when that
is above the available memory. Every output is written to a temporary name and renamed.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import psutil
import tifffile
import torch

from ..errors import InputError
from ..grid import grid_rows
from ..train.model import MultiGradeModel
from ..train.progress import Progress
from . import atomic
from .images import save_png

FORMATS = {
    ".png": "8-bit PNG (clipped to [0, 1]; held in memory)",
    ".tif": "tiled float32 TIFF",
    ".tiff": "tiled float32 TIFF",
    ".npy": "float32 NumPy array",
    ".zarr": "float32 zarr store",
}
TILE = 256
# Past this many bytes a TIFF needs 64-bit offsets.
BIGTIFF_BYTES = 2**32 - 2**25


def check_output(path: Path) -> None:
    """Refuse, with one line, an output the renderer cannot write."""
    if path.suffix.lower() not in FORMATS:
        kinds = ", ".join(FORMATS)
        suffix = path.suffix or "(none)"
        raise InputError(f"--out {path}: unsupported extension {suffix}; use {kinds}")
    if not path.parent.is_dir():
        raise InputError(f"--out {path}: directory {path.parent} does not exist")


def check_png_fits(shape: tuple[int, int, int]) -> None:
    """A PNG is assembled in memory: refuse one larger than the available memory."""
    needed = shape[0] * shape[1] * shape[2] * 2
    available = psutil.virtual_memory().available
    if needed > available:
        raise InputError(
            f"a {shape[0]}x{shape[1]} PNG needs {needed / 2**30:.1f} GB in memory, "
            f"{available / 2**30:.1f} GB is available; write .tif or .zarr (tiled, bounded)"
        )


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.stem}.tmp{path.suffix}")


class _Npy:
    """A ``.npy`` file written band after band behind its header."""

    def __init__(self, path: Path, shape: tuple[int, int, int]):
        self.path, self.tmp = path, _temporary(path)
        self._file = open(self.tmp, "wb")  # noqa: SIM115 (closed by close(), after the bands)
        header = {"descr": "<f4", "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_2_0(self._file, header)

    def write(self, top: int, band: np.ndarray) -> None:
        self._file.write(np.ascontiguousarray(band, dtype="<f4").tobytes())

    def close(self) -> None:
        self._file.close()
        atomic.atomic_write(self.path, lambda out: self.tmp.replace(out))


class _Zarr:
    def __init__(self, path: Path, shape: tuple[int, int, int]):
        import zarr

        self.path, self.tmp = path, _temporary(path)
        shutil.rmtree(self.tmp, ignore_errors=True)
        self._array = zarr.open_array(
            str(self.tmp), mode="w", shape=shape, chunks=(TILE, TILE, shape[2]), dtype="f4"
        )

    def write(self, top: int, band: np.ndarray) -> None:
        self._array[top : top + band.shape[0]] = band

    def close(self) -> None:
        if self.path.exists():
            shutil.rmtree(self.path)
        self.tmp.rename(self.path)


class _Png:
    """The 8-bit image, assembled in memory."""

    def __init__(self, path: Path, shape: tuple[int, int, int]):
        check_png_fits(shape)
        self.path, self._pixels = path, np.empty(shape, dtype=np.float32)

    def write(self, top: int, band: np.ndarray) -> None:
        self._pixels[top : top + band.shape[0]] = band

    def close(self) -> None:
        atomic.atomic_write(self.path, lambda out: save_png(out, self._pixels))


SINKS: dict[str, type[_Npy | _Zarr | _Png]] = {".npy": _Npy, ".zarr": _Zarr, ".png": _Png}


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
) -> None:
    """Render into every file of ``paths`` (formats from their extensions), band by band."""
    for path in paths:
        check_output(path)
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
            for sink in sinks:
                sink.write(top, band)
            progress.advance(bottom - top)
            progress.show({})
            # Last: tifffile stops drawing once it has every tile.
            yield band

    tiffs = [p for p in paths if p.suffix.lower() in (".tif", ".tiff")]
    sinks = [SINKS[p.suffix.lower()](p, shape) for p in paths if p not in tiffs]
    if tiffs:
        _write_tiff(tiffs[0], shape, (tile for band in bands() for tile in _tiles(band)))
        for extra in tiffs[1:]:
            shutil.copyfile(tiffs[0], extra)
    else:
        for _ in bands():
            pass
    progress.finish()
    for sink in sinks:
        sink.close()


def _write_tiff(path: Path, shape: tuple[int, int, int], tiles: Iterator[np.ndarray]) -> None:
    grey = shape[2] == 1
    big = shape[0] * shape[1] * shape[2] * 4 > BIGTIFF_BYTES

    def write(out: Path) -> None:
        tifffile.imwrite(
            out, data=tiles, shape=shape, dtype=np.float32,
            tile=(TILE, TILE), photometric="minisblack" if grey else "rgb", bigtiff=big,
        )  # fmt: skip

    atomic.atomic_write(path, write)


__all__ = ["FORMATS", "check_output", "check_png_fits", "render_to"]

"""Images read band by band, for images larger than memory.

``.npy`` files are memory-mapped; uncompressed TIFFs are memory-mapped by tifffile, compressed
or tiled ones read through tifffile's zarr interface; ``.zarr`` stores are opened with zarr. Any
other format is read whole (it has to be decoded anyway). Pixels are ``[H, W]`` or
``[H, W, C]`` (C = 1 or 3; an alpha channel is dropped): unsigned integers are scaled to
[0, 1], floats must already lie there (checked band by band, with the same one-line errors as
``io.images``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ..errors import InputError
from .images import Image, check_image_path, crop_origin, from_array, load_image

LAZY_SUFFIXES = (".npy", ".tif", ".tiff", ".zarr")
# The largest side accepted, 2^20 pixels: of an image, checked from the header before any pixel
# is read (a header that claims more is refused, not allocated); of a grid predict renders.
MAX_SIDE = 1 << 20


class LazyImage:
    """An image whose pixels are read on demand: ``band(r0, r1, ...)`` -> float32
    ``[rows, cols, C]`` in [0, 1], within an optional crop window (``centre_crop``)."""

    def __init__(self, array, source: str, notes: list[str] | None = None):
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
            raise InputError(f"{source}: unsupported image shape {tuple(array.shape)}")
        self._array, self.source = array, source
        self.notes = list(notes or [])
        self._top, self._left = 0, 0
        self.height, self.width = int(array.shape[0]), int(array.shape[1])
        channels = 1 if array.ndim == 2 else int(array.shape[2])
        if channels in (2, 4):
            self.notes.append(f"{source}: alpha channel dropped")
        self.channels = {1: 1, 2: 1, 3: 3, 4: 3}[channels]
        if self.height < 2 or self.width < 2:
            raise InputError(f"{source}: image is {self.height}x{self.width}; need at least 2x2")
        if max(self.height, self.width) > MAX_SIDE:
            raise InputError(
                f"{source}: image is {self.height}x{self.width}; at most {MAX_SIDE} pixels a side"
            )
        dtype = np.dtype(array.dtype)
        self._peak: float | None = None
        if np.issubdtype(dtype, np.unsignedinteger):
            self._peak = float(np.iinfo(dtype).max)
            if dtype != np.uint8:
                self.notes.append(f"{source}: {dtype.itemsize * 8}-bit image scaled to [0, 1]")
        elif not np.issubdtype(dtype, np.floating):
            raise InputError(f"{source}: unsupported pixel type {dtype}")

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.height, self.width, self.channels

    @property
    def lazy(self) -> bool:
        """Whether the pixels stay in their file (a memory map or a zarr array) until read."""
        return type(self._array) is not np.ndarray

    def band(self, r0: int, r1: int, row_step: int = 1, col0: int = 0, col_step: int = 1,
             dtype=np.float32) -> np.ndarray:  # fmt: skip
        """Rows ``r0:r1:row_step`` and columns ``col0::col_step`` of the (cropped) image as
        ``[r, c, C]`` in ``dtype`` (float64: exactly ``io.images``' pixels)."""
        rows = slice(self._top + r0, self._top + min(r1, self.height), row_step)
        cols = slice(self._left + col0, self._left + self.width, col_step)
        try:
            raw = np.asarray(self._array[rows, cols])
        except Exception as exc:  # a truncated or corrupt file fails in its reader's own way
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputError(f"cannot read {self.source} as an image: {reason}") from None
        if raw.ndim == 2:
            raw = raw[..., None]
        raw = raw[..., : self.channels]
        if self._peak is not None:
            # Divided in float64 and rounded once, as io.images does: the same fp32 targets.
            return (raw.astype(np.float64) / self._peak).astype(dtype)
        pixels = raw.astype(dtype)
        if not np.isfinite(pixels).all():
            raise InputError(f"{self.source}: image has NaN or infinite values")
        if pixels.min(initial=0.0) < 0 or pixels.max(initial=0.0) > 1:
            raise InputError(f"{self.source}: float image values outside [0, 1]")
        return pixels

    def bands(self, rows: int = 256, dtype=np.float32) -> Iterator[np.ndarray]:
        """The whole (cropped) image, ``rows`` rows at a time."""
        for top in range(0, self.height, rows):
            yield self.band(top, top + rows, dtype=dtype)

    def load(self) -> Image:
        """The pixels in memory, as ``io.images`` gives them (float64 ``[H, W, C]``): a view
        of pixels decoded already, else read band by band."""
        decoded = not self.lazy and self._array.dtype == np.float64 and self._array.ndim == 3
        if decoded and self._array.shape[2] == self.channels:
            rows = slice(self._top, self._top + self.height)
            pixels = self._array[rows, self._left : self._left + self.width]
        else:
            pixels = np.concatenate(list(self.bands(dtype=np.float64)), axis=0)
        return Image(pixels, self.source, list(self.notes))

    def sha256(self) -> str:
        """The content hash of ``io.images``' pixels, computed band by band."""
        digest = hashlib.sha256(str(self.shape).encode())
        for band in self.bands(dtype=np.float64):
            digest.update(band.tobytes())
        return digest.hexdigest()

    def centre_crop(self, size: tuple[int, int]) -> LazyImage:
        """The centre ``size = (H, W)`` of the image (nothing read); refuses one too large."""
        height, width = size
        top, left = crop_origin(size, self.height, self.width)
        self._top, self._left = self._top + top, self._left + left
        self.height, self.width = height, width
        self.notes.append(f"cropped to the centre {height}x{width} (rows {top}.., cols {left}..)")
        return self


def open_lazy(path: str | Path) -> LazyImage:
    """A lazily read image; formats without random access are decoded whole."""
    array = open_array(path)
    if array is not None:
        return LazyImage(array, str(path))
    image = load_image(path)
    return LazyImage(image.pixels, str(path), image.notes)


def open_array(path: str | Path):
    """The pixels of a ``.npy``, TIFF or ``.zarr`` image as an array read on demand (a memory
    map or a zarr array), or None for other formats."""
    path = Path(path)
    check_image_path(path)
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r")
        if suffix in (".tif", ".tiff"):
            return _tiff(path)
        if suffix == ".zarr":
            import zarr

            return zarr.open(str(path), mode="r")
    except Exception as exc:  # the readers raise many types for unreadable files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {path} as an image: {reason}") from None
    return None


def _tiff(path: Path):
    import tifffile

    try:
        return tifffile.memmap(path, mode="r")
    except ValueError:
        import zarr

        return zarr.open(tifffile.imread(path, aszarr=True), mode="r")


def lazy_from_array(array: np.ndarray, source: str = "array") -> LazyImage:
    """An in-memory image as a LazyImage (its pixels validated as ``io.images`` does)."""
    image = from_array(array, source)
    return LazyImage(image.pixels, source, image.notes)

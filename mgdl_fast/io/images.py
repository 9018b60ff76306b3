"""Reading images into float arrays in [0, 1], refusing what cannot be fitted honestly."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np

from ..errors import InputError


@dataclass
class Image:
    """Pixels ``[H, W, C]`` float64 in [0, 1] (C = 1 grayscale, 3 RGB), with what was converted."""

    pixels: np.ndarray
    source: str
    notes: list[str] = field(default_factory=list)

    @property
    def height(self) -> int:
        return self.pixels.shape[0]

    @property
    def width(self) -> int:
        return self.pixels.shape[1]

    @property
    def channels(self) -> int:
        return self.pixels.shape[2]


def default_image() -> Image:
    """The embedded default: scikit-image's 512x512 cameraman (``skimage.data.camera()``)."""
    from skimage import data

    return from_array(data.camera(), source="skimage.data.camera()")


def load_image(path: str | Path) -> Image:
    """Read an image file (first frame) and convert it to float ``[H, W, C]`` in [0, 1].

    16-bit images are scaled by 1/65535 and an alpha channel is dropped; both are noted in
    ``Image.notes``. Raises InputError for a missing or unreadable file, an unsupported layout,
    fewer than 2x2 pixels, NaN/inf values or float values outside [0, 1].
    """
    path = Path(path)
    if path.suffix.lower() in (".npy", ".zarr"):
        from .lazy import open_array

        return from_array(np.asarray(open_array(path)), source=str(path))
    check_image_path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory, not an image file")
    try:
        array = iio.imread(path, index=0)
        frames = iio.improps(path).n_images
    except Exception as exc:  # imageio raises many types for undecodable files
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"cannot read {path} as an image: {reason}") from None
    image = from_array(array, source=str(path))
    if frames is not None and frames > 1:
        image.notes.append(f"{path.name} has {frames} frames; using the first")
    return image


def check_image_path(path: Path) -> None:
    """Refuse a missing path and one that is not a file or a folder (a FIFO, a device, a
    socket: reading one could block forever)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        raise InputError(f"image file not found: {path}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise InputError(f"{path} is not a regular file (a FIFO, device or socket); give an image")


def from_array(array: np.ndarray, source: str = "array") -> Image:
    """Validate and convert an ``[H, W]`` or ``[H, W, C]`` array (C in 1..4) to an Image."""
    array = np.asarray(array)
    notes: list[str] = []
    if array.ndim == 3 and array.shape[2] in (2, 4):
        notes.append(
            f"{source}: alpha channel dropped ({'LA' if array.shape[2] == 2 else 'RGBA'} -> "
            f"{'grayscale' if array.shape[2] == 2 else 'RGB'})"
        )
        array = array[..., : array.shape[2] - 1]
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[2] not in (1, 3):
        raise InputError(
            f"{source}: unsupported image shape {array.shape}; expected HxW, HxWx3 or HxWx4"
        )
    height, width = array.shape[:2]
    if height < 2 or width < 2:
        raise InputError(f"{source}: image is {height}x{width} pixels; need at least 2x2")
    return Image(_to_unit_float(array, source, notes), source, notes)


def _to_unit_float(array: np.ndarray, source: str, notes: list[str]) -> np.ndarray:
    if array.dtype == np.bool_:
        return array.astype(np.float64)
    if np.issubdtype(array.dtype, np.unsignedinteger):
        peak = np.iinfo(array.dtype).max
        if array.dtype != np.uint8:
            notes.append(f"{source}: {array.dtype.itemsize * 8}-bit image scaled by 1/{peak}")
        return array.astype(np.float64) / peak
    if np.issubdtype(array.dtype, np.floating):
        pixels = array.astype(np.float64)
        bad = int(np.size(pixels) - np.count_nonzero(np.isfinite(pixels)))
        if bad:
            raise InputError(f"{source}: image has {bad} NaN or infinite values")
        low, high = float(pixels.min()), float(pixels.max())
        if low < 0.0 or high > 1.0:
            raise InputError(
                f"{source}: float image values span [{low:g}, {high:g}]; expected [0, 1]"
            )
        return pixels
    raise InputError(f"{source}: unsupported pixel type {array.dtype}")


def to_uint8(pixels: np.ndarray, band_rows: int = 256) -> np.ndarray:
    """``[H, W, C]`` floats to uint8 for display; values outside [0, 1] are clipped.
    Converted ``band_rows`` rows at a time, so a large image needs only its uint8 copy."""
    image = np.empty(pixels.shape, dtype=np.uint8)
    for top in range(0, pixels.shape[0], band_rows):
        band = np.clip(np.asarray(pixels[top : top + band_rows], dtype=np.float64), 0.0, 1.0)
        image[top : top + band_rows] = np.rint(band * 255.0)
    return image[..., 0] if pixels.shape[-1] == 1 else image


def save_png(path: str | Path, pixels: np.ndarray) -> None:
    """Write ``[H, W, C]`` floats in [0, 1] as an 8-bit PNG (clipped for display)."""
    iio.imwrite(path, to_uint8(pixels))


def crop_origin(size: tuple[int, int], height: int, width: int) -> tuple[int, int]:
    """(top, left) of the centre ``size = (H, W)`` of a ``height x width`` image; refuses a
    crop larger than the image or smaller than 2x2."""
    if not (2 <= size[0] <= height and 2 <= size[1] <= width):
        raise InputError(
            f"--crop {size[0]} {size[1]} must lie within the {height}x{width} image "
            "and be at least 2x2"
        )
    return (height - size[0]) // 2, (width - size[1]) // 2


def centre_crop(image: Image, size: tuple[int, int]) -> Image:
    """``image`` cropped to its centre ``size = (H, W)``; refuses a crop larger than it."""
    height, width = size
    top, left = crop_origin(size, image.height, image.width)
    image.pixels = image.pixels[top : top + height, left : left + width].copy()
    image.notes.append(f"cropped to the centre {height}x{width} (rows {top}.., cols {left}..)")
    return image

"""Lazily read images (issue 15): every format gives the pixels ``io.images`` loads, band by
band, and bad files get one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from mgdl_fast.errors import InputError
from mgdl_fast.io.images import load_image
from mgdl_fast.io.lazy import open_lazy


@pytest.fixture(scope="module")
def raw():
    rng = np.random.default_rng(3)
    return rng.integers(0, 65536, size=(45, 38, 3), dtype=np.uint16)


def _write(path, raw):
    suffix = path.suffix
    if suffix == ".npy":
        np.save(path, raw)
    elif path.name.endswith("tiled.tif"):
        tifffile.imwrite(path, raw, tile=(16, 16), photometric="rgb")
    elif suffix == ".tif":
        tifffile.imwrite(path, raw, photometric="rgb")
    else:
        import zarr

        store = zarr.open(str(path), mode="w", shape=raw.shape, chunks=(8, 8, 3), dtype=raw.dtype)
        store[:] = raw
    return path


@pytest.mark.parametrize("name", ["img.npy", "img.tif", "img_tiled.tif", "img.zarr"])
def test_bands_equal_the_eager_pixels(tmp_path, raw, name):
    path = _write(tmp_path / name, raw)
    lazy = open_lazy(path)
    expected = raw.astype(np.float64) / 65535.0
    np.testing.assert_allclose(load_image(path).pixels, expected, rtol=0, atol=1e-12)
    assert lazy.shape == raw.shape
    # The fp32 targets are the eager pixels rounded once: streamed runs see the same values.
    as_fp32 = expected.astype(np.float32)
    np.testing.assert_array_equal(lazy.band(0, 45), as_fp32)
    np.testing.assert_array_equal(lazy.band(3, 40, 2, 1, 2), as_fp32[3:40:2, 1::2])
    assert any("16-bit" in note for note in lazy.notes)


def test_float_images_outside_unit_range_are_refused(tmp_path):
    path = tmp_path / "bad.npy"
    np.save(path, np.full((8, 8), 1.5, dtype=np.float32))
    with pytest.raises(InputError, match="outside"):
        open_lazy(path).band(0, 8)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        open_lazy(tmp_path / "none.npy")
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"not a tiff")
    with pytest.raises(InputError, match="cannot read"):
        open_lazy(broken)

"""Band-by-band rendering (issue 15): every format holds the model's prediction on the grid,
whatever the band and tile edges, and a PNG too large for memory is refused."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from mgdl_fast import BlockParams, BlockShape
from mgdl_fast.errors import InputError
from mgdl_fast.grid import grid_rows
from mgdl_fast.io import atomic, render, sinks
from mgdl_fast.train.model import MultiGradeModel


def _model(channels: int) -> MultiGradeModel:
    model = MultiGradeModel()
    first = BlockParams.init(BlockShape(2, 16, 2, channels), seed=1)
    second = BlockParams.init(BlockShape(16, 8, 1, channels), seed=2)
    model.append(first, 1.0)
    model.append(second, 1.0)
    return model


@pytest.mark.parametrize("channels", [1, 3])
def test_every_format_holds_the_prediction(tmp_path, channels):
    height, width = 300, 270  # past one 256-row band and one 256-column tile
    model = _model(channels)
    expected = (
        model.predict(grid_rows(height, width, 0, height)).reshape(height, width, channels).numpy()
    )
    paths = [tmp_path / name for name in ("r.tif", "r.npy", "r.zarr", "r.png")]
    render.render_to(model, height, width, paths, chunk_size=5000)
    tif = tifffile.imread(paths[0])
    np.testing.assert_allclose(tif.reshape(expected.shape), expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.load(paths[1]), expected, rtol=0, atol=1e-6)
    import zarr

    np.testing.assert_allclose(zarr.open(str(paths[2]), mode="r")[:], expected, atol=1e-6)
    assert paths[3].stat().st_size > 0
    with tifffile.TiffFile(paths[0]) as tiff:
        assert tiff.pages[0].is_tiled
    assert not list(tmp_path.glob(".*tmp*"))


def test_a_png_larger_than_memory_is_refused(monkeypatch):
    monkeypatch.setattr(sinks.psutil, "virtual_memory", lambda: type("M", (), {"available": 1e6}))
    with pytest.raises(InputError, match="write .tif or .zarr"):
        sinks.check_png_fits((30000, 30000, 1))


def test_large_tiffs_are_bigtiff(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "BIGTIFF_BYTES", 100)
    render.render_to(_model(1), 20, 20, [tmp_path / "big.tif"])
    with tifffile.TiffFile(tmp_path / "big.tif") as tiff:
        assert tiff.is_bigtiff
    assert torch.from_numpy(tifffile.imread(tmp_path / "big.tif")).isfinite().all()


def test_a_zarr_store_is_readable_as_the_other_outputs(tmp_path):
    previous = os.umask(0o022)
    try:
        sink = sinks.Zarr(tmp_path / "r.zarr", (4, 4, 1))
        os.chmod(sink.tmp, 0o700)  # as mkdtemp made it (zarr 3.1 happens to recreate it)
        sink.write(0, np.zeros((4, 4, 1), dtype=np.float32))
        sink.finish()
        sink.commit()
    finally:
        os.umask(previous)
    assert (tmp_path / "r.zarr").stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("names", [("r.tif", "r.png"), ("r.npy", "r.png"), ("r.zarr", "r.png")])
def test_a_failed_output_leaves_none_of_the_others(tmp_path, monkeypatch, names):
    monkeypatch.setenv(atomic.FULL_ENV, names[-1])  # the last output fails as on a full disk
    atomic._counts.clear()
    with pytest.raises(atomic.WriteError, match=f"cannot write {tmp_path / names[-1]}") as info:
        render.render_to(_model(1), 20, 20, [tmp_path / name for name in names])
    assert "\n" not in str(info.value)
    assert os.listdir(tmp_path) == []


def test_a_store_that_cannot_be_replaced_is_one_line(tmp_path, monkeypatch):
    store = tmp_path / "r.zarr"
    render.render_to(_model(1), 20, 20, [store])
    rmdir = os.rmdir

    def busy(path, *args, **kwargs):
        if Path(path) == store:
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(path))
        rmdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "rmdir", busy)
    with pytest.raises(atomic.WriteError, match=f"cannot write {store}: .*busy"):
        render.render_to(_model(1), 20, 20, [tmp_path / "r.npy", store], overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["r.zarr"]


def test_a_store_in_zarr_2_layout_is_recognised_as_a_render(tmp_path):
    import zarr

    store = tmp_path / "r.zarr"  # as zarr 2 (pyproject allows >= 2.16) renders it
    old = zarr.open_array(str(store), mode="w", shape=(300, 20, 1), chunks=(256, 256, 1),
                          dtype="f4", zarr_format=2)  # fmt: skip
    old.attrs["mgdl_fast"] = sinks.RENDER_FORMAT
    old[:] = 1.0
    assert {".zarray", ".zattrs", "0.0.0", "1.0.0"} <= set(os.listdir(store))
    (store / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="holds notes.txt, which mgdl-fast did not write"):
        sinks.check_output(store, overwrite=True)
    (store / "notes.txt").unlink()
    render.render_to(_model(1), 20, 20, [store], overwrite=True)
    assert zarr.open_array(str(store), mode="r").shape == (20, 20, 1)

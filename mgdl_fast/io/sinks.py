"""Where a render goes: one writer per output format, each writing to a new temporary name of
its own (created exclusively beside the output) and renaming it into place at the end.

An existing output is never removed unless the caller says so (``predict --overwrite``), and
then only a file (replaced atomically by the rename, never followed through a link) or a
``.zarr`` store this renderer wrote: its attributes carry ``mgdl_fast: render/1`` and it holds
only that array's own files (zarr 3's layout or zarr 2's). A failed render removes its
temporary output and nothing else. Every write failure is one ``WriteError`` naming the output.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import psutil
import tifffile

from ..errors import InputError
from . import atomic
from .images import save_png
from .ownership import exists

FORMATS = {
    ".png": "8-bit PNG (clipped to [0, 1]; held in memory)",
    ".tif": "tiled float32 TIFF",
    ".tiff": "tiled float32 TIFF",
    ".npy": "float32 NumPy array",
    ".zarr": "float32 zarr store",
}
TILE = 256
RENDER_FORMAT = "render/1"
# A PNG is assembled in memory: the float32 image, its uint8 copy and the encoder's rows.
PNG_BYTES_PER_VALUE = 6


def check_output(path: Path, overwrite: bool = False) -> None:
    """Refuse, with one line, an output the renderer cannot or may not write."""
    if path.suffix.lower() not in FORMATS:
        kinds = ", ".join(FORMATS)
        suffix = path.suffix or "(none)"
        raise InputError(f"--out {path}: unsupported extension {suffix}; use {kinds}")
    if not path.parent.is_dir():
        raise InputError(f"--out {path}: directory {path.parent} does not exist")
    if not exists(path):
        return
    if not overwrite:
        raise InputError(f"--out {path} exists; pass --overwrite to replace it")
    if path.is_symlink():
        raise InputError(f"--out {path} is a symbolic link; name the file itself")
    if path.suffix.lower() == ".zarr":
        _own_store_entries(path)
    elif path.is_dir():
        raise InputError(f"--out {path} is a directory; it is kept")


def check_png_fits(shape: tuple[int, int, int]) -> None:
    """A PNG is assembled in memory: refuse one larger than the available memory."""
    needed = math.prod(shape) * PNG_BYTES_PER_VALUE
    available = psutil.virtual_memory().available
    if needed > available:
        raise InputError(
            f"a {shape[0]}x{shape[1]} PNG needs {needed / 2**30:.1f} GB in memory, "
            f"{available / 2**30:.1f} GB is available; write .tif or .zarr (tiled, bounded)"
        )


def _own_store_entries(path: Path) -> list[str]:
    """The files of the render store at ``path`` (relative), refusing a store this renderer
    did not write or one holding anything else."""
    import zarr

    try:
        array = zarr.open_array(str(path), mode="r")
        ours = array.attrs.get("mgdl_fast") == RENDER_FORMAT
        keys = _store_keys(path, [math.ceil(s / c) for s, c in zip(array.shape, array.chunks)])
    except Exception:  # zarr raises many types for what is not its store
        ours = False
    if not ours:
        raise InputError(f"--out {path} is not a store mgdl-fast rendered; it is kept")
    found = []
    for root, dirs, files in os.walk(path):
        for name in files + [d for d in dirs if Path(root, d).is_symlink()]:
            rel = Path(root, name).relative_to(path).as_posix()
            if rel not in keys:
                raise InputError(f"--out {path} holds {rel}, which mgdl-fast did not write; kept")
            found.append(rel)
    return found


def _store_keys(path: Path, grid: list[int]) -> set[str]:
    """The files a render store of ``grid`` chunks holds: zarr 3 writes ``zarr.json`` and
    chunks ``c/i/j/k``; zarr 2 (which pyproject allows) ``.zarray``, ``.zattrs`` and chunks
    ``i.j.k`` (its ``dimension_separator``)."""
    chunks = list(np.ndindex(*grid))
    if (path / "zarr.json").is_file():
        return {"zarr.json"} | {"c/" + "/".join(map(str, index)) for index in chunks}
    separator = json.loads((path / ".zarray").read_text()).get("dimension_separator") or "."
    return {".zarray", ".zattrs"} | {separator.join(map(str, index)) for index in chunks}


def _remove_store(path: Path) -> None:
    """Remove a render store (``_own_store_entries``): its files, then its empty folders."""
    for rel in _own_store_entries(path):
        (path / rel).unlink()
    for root, _, _ in sorted(os.walk(path), key=lambda w: len(w[0]), reverse=True):
        os.rmdir(root)


class Sink:
    """A writer of one output: ``write(top, band)`` per band, ``finish`` (its temporary output
    complete), then ``commit`` (into place) or ``abort`` (its temporary output removed)."""

    def __init__(self, path: Path, shape: tuple[int, int, int]):
        self.path, self.shape = path, shape
        self.tmp: Path | None = None

    def write(self, top: int, band: np.ndarray) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Complete the temporary output after the last band; nothing is in place yet."""

    def commit(self) -> None:
        """Put the finished temporary output in place (mode from the umask, durably)."""
        assert self.tmp is not None
        atomic.commit_temp(self.tmp, self.path)
        self.tmp = None

    def _produce(self, write: Callable[[Path], object]) -> None:
        """Have ``write(tmp)`` make the whole output at a new temporary name of its own."""
        try:
            self.tmp = atomic.unique_temp(self.path)
            with atomic.guarded(self.path.name):
                write(self.tmp)
        except InputError:
            raise
        except Exception as exc:  # every writing library raises its own types
            raise self._fail(exc) from None

    def _fail(self, exc: Exception) -> atomic.WriteError:
        return atomic.WriteError(f"cannot write {self.path}: {atomic.reason(exc)}")

    def abort(self) -> None:
        if self.tmp is not None and exists(self.tmp):
            if self.tmp.is_dir() and not self.tmp.is_symlink():
                shutil.rmtree(self.tmp)
            else:
                self.tmp.unlink()
        self.tmp = None


class Npy(Sink):
    """A ``.npy`` file written band after band behind its header."""

    def __init__(self, path: Path, shape: tuple[int, int, int]):
        super().__init__(path, shape)
        try:
            fd, name = tempfile.mkstemp(prefix=f".{path.stem}.tmp", suffix=".npy", dir=path.parent)
            self.tmp = Path(name)
            self._file = os.fdopen(fd, "wb", buffering=0)  # a failed write fails here
            header = {"descr": "<f4", "fortran_order": False, "shape": shape}
            with atomic.guarded(path.name):
                np.lib.format.write_array_header_2_0(self._file, header)
        except Exception as exc:
            self.abort()
            raise self._fail(exc) from None

    def write(self, top: int, band: np.ndarray) -> None:
        try:
            with atomic.guarded(self.path.name):
                self._file.write(np.ascontiguousarray(band, dtype="<f4").tobytes())
        except Exception as exc:
            raise self._fail(exc) from None

    def finish(self) -> None:
        try:
            self._file.close()
        except Exception as exc:
            raise self._fail(exc) from None

    def abort(self) -> None:
        if hasattr(self, "_file"):
            self._file.close()
        super().abort()


class Zarr(Sink):
    def __init__(self, path: Path, shape: tuple[int, int, int]):
        import zarr

        super().__init__(path, shape)
        try:
            self.tmp = Path(tempfile.mkdtemp(prefix=f".{path.stem}.tmp", suffix=".zarr",
                                             dir=path.parent))  # fmt: skip
            self._array = zarr.open_array(
                str(self.tmp), mode="w", shape=shape, chunks=(TILE, TILE, shape[2]), dtype="f4"
            )
            self._array.attrs["mgdl_fast"] = RENDER_FORMAT
        except Exception as exc:
            self.abort()
            raise self._fail(exc) from None

    def write(self, top: int, band: np.ndarray) -> None:
        try:
            with atomic.guarded(self.path.name):
                self._array[top : top + band.shape[0]] = band
        except Exception as exc:
            raise self._fail(exc) from None

    def commit(self) -> None:
        """Replace a store this renderer wrote (checked again) and rename the new one there,
        readable as the other outputs (``mkdtemp`` makes a folder only its owner reads)."""
        assert self.tmp is not None
        try:
            if exists(self.path):
                _remove_store(self.path)
            os.chmod(self.tmp, atomic.dir_mode())
            self.tmp.rename(self.path)
            atomic.fsync_dir(self.path.parent)
        except OSError as exc:
            raise self._fail(exc) from None
        self.tmp = None


class Png(Sink):
    """The 8-bit image, assembled in memory."""

    def __init__(self, path: Path, shape: tuple[int, int, int]):
        check_png_fits(shape)
        super().__init__(path, shape)
        try:
            self._pixels = np.empty(shape, dtype=np.float32)
        except MemoryError:
            raise InputError(f"not enough memory for a {shape[0]}x{shape[1]} PNG") from None

    def write(self, top: int, band: np.ndarray) -> None:
        self._pixels[top : top + band.shape[0]] = band

    def finish(self) -> None:
        self._produce(lambda out: save_png(out, self._pixels))


class Tiff(Sink):
    """A tiled float32 TIFF. Not fed bands: tifffile pulls the tiles from ``draw``'s iterator
    (``[TILE, TILE(, C)]`` each, row-major), or the file is a ``copy`` of another's."""

    def draw(self, tiles: Iterator[np.ndarray], bigtiff: bool) -> None:
        grey = self.shape[2] == 1

        def write(out: Path) -> None:
            tifffile.imwrite(
                out, data=tiles, shape=self.shape, dtype=np.float32, tile=(TILE, TILE),
                photometric="minisblack" if grey else "rgb", bigtiff=bigtiff,
            )  # fmt: skip

        self._produce(write)

    def copy(self, source: Path) -> None:
        self._produce(lambda out: shutil.copyfile(source, out))


SINKS: dict[str, type[Sink]] = {".npy": Npy, ".zarr": Zarr, ".png": Png}

__all__ = ["FORMATS", "SINKS", "TILE", "Sink", "Tiff", "check_output", "check_png_fits"]

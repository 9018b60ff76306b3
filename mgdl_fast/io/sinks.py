"""Where a render goes: one writer per output format, each writing to a new temporary name of
its own (created exclusively beside the output) and renaming it into place at the end.

An existing output is never removed unless the caller says so (``predict --overwrite``), and
then only a file (replaced atomically by the rename, never followed through a link) or a
``.zarr`` store this renderer wrote: its ``zarr.json`` carries ``mgdl_fast: render/1`` and it
holds only that array's own files. A failed render removes its temporary output and nothing
else. Every write failure is one ``WriteError`` naming the output.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import psutil

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
        grid = [range(math.ceil(s / c)) for s, c in zip(array.shape, array.chunks)]
    except Exception:  # zarr raises many types for what is not its store
        ours, grid = False, []
    if not ours:
        raise InputError(f"--out {path} is not a store mgdl-fast rendered; it is kept")
    keys = {"zarr.json"} | {
        "c/" + "/".join(map(str, index)) for index in np.ndindex(*map(len, grid))
    }
    found = []
    for root, dirs, files in os.walk(path):
        for name in files + [d for d in dirs if Path(root, d).is_symlink()]:
            rel = Path(root, name).relative_to(path).as_posix()
            if rel not in keys:
                raise InputError(f"--out {path} holds {rel}, which mgdl-fast did not write; kept")
            found.append(rel)
    return found


def _remove_store(path: Path) -> None:
    """Remove a render store (``_own_store_entries``): its files, then its empty folders."""
    for rel in _own_store_entries(path):
        (path / rel).unlink()
    for root, _, _ in sorted(os.walk(path), key=lambda w: len(w[0]), reverse=True):
        os.rmdir(root)


class Sink:
    """A writer of one output: ``write(top, band)`` per band, then ``close`` (into place) or
    ``abort`` (its temporary output removed)."""

    def __init__(self, path: Path, shape: tuple[int, int, int]):
        self.path, self.shape = path, shape
        self.tmp: Path | None = None

    def write(self, top: int, band: np.ndarray) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

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

    def close(self) -> None:
        try:
            self._file.close()
        except Exception as exc:
            raise self._fail(exc) from None
        assert self.tmp is not None
        atomic.commit_temp(self.tmp, self.path)
        self.tmp = None

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

    def close(self) -> None:
        if exists(self.path):
            _remove_store(self.path)
        assert self.tmp is not None
        try:
            self.tmp.rename(self.path)
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

    def close(self) -> None:
        atomic.atomic_write(self.path, lambda out: save_png(out, self._pixels))


SINKS: dict[str, type[Sink]] = {".npy": Npy, ".zarr": Zarr, ".png": Png}

__all__ = ["FORMATS", "SINKS", "TILE", "Sink", "check_output", "check_png_fits"]

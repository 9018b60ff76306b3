"""Feature stores for grades whose inputs do not fit where they are computed.

- ``DiskFeatures``: a frozen grade's last hidden features ``[N, W]`` per split in raw files
  (fp32 or bf16) in the run's work directory, read chunk by chunk with ``pread`` into reused
  buffers (the page cache holds what fits; the process itself holds two chunks).
- ``HostFeatures``: the features in (pinned) host memory, for a CUDA grade whose features do not
  fit on the GPU.

On a CUDA device both stage chunks through two pinned host buffers and two device buffers:
chunk i+1 is read (disk) or selected (host) while the GPU works on chunk i, and its copy is
queued on the compute stream after chunk i's kernels, so a device buffer is only overwritten
once the kernels reading it are done. Both act as the store a freeze writes into and then as the
next grade's inputs (``inputs.py``'s ``chunks`` interface).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch

from ...errors import InputError
from ...io import atomic
from ...io.atomic import WriteError
from .inputs import Chunks


def _bytes_view(t: torch.Tensor) -> memoryview:
    """The raw bytes of a contiguous CPU tensor (bf16 through an int16 view: NumPy has no bf16)."""
    if t.dtype == torch.bfloat16:
        t = t.view(torch.int16)
    return memoryview(t.numpy()).cast("B")  # type: ignore[arg-type]


class _Staged:
    """Chunk delivery with double buffering; subclasses fill a host chunk with ``_read``."""

    def __init__(self, rows: dict[str, int], width: int, dtype: torch.dtype, device):
        self._rows, self.width, self._dtype = dict(rows), width, dtype
        self.device = torch.device(device)
        self._buffers: dict[int, tuple[list[torch.Tensor], list[torch.Tensor]]] = {}

    @property
    def dtype(self) -> torch.dtype:
        return self._dtype

    def rows(self, split: str) -> int:
        return self._rows[split]

    def writable(self, split: str, start: int, n: int) -> torch.Tensor | None:
        return None

    def finish(self):
        return self

    def _read(self, split: str, start: int, out: torch.Tensor) -> None:
        raise NotImplementedError

    def _pinned(self, split: str, start: int, n: int) -> torch.Tensor | None:
        """Rows already in pinned host memory, copied to the device without staging."""
        return None

    def _stage(self, size: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        if size not in self._buffers:
            cuda = self.device.type == "cuda"
            host = [
                torch.empty(size, self.width, dtype=self._dtype, pin_memory=cuda)
                for _ in range(2 if cuda else 1)
            ]
            dev = [torch.empty(size, self.width, dtype=self._dtype, device=self.device)
                   for _ in range(2)] if cuda else []  # fmt: skip
            self._buffers[size] = (host, dev)
        return self._buffers[size]

    def chunks(self, split: str, size: int) -> Chunks:
        total = self._rows[split]
        host, dev = self._stage(min(size, total))
        starts = list(range(0, total, size))
        if not dev:
            for start in starts:
                n = min(size, total - start)
                self._read(split, start, host[0][:n])
                yield start, host[0][:n]
            return
        copied: list[torch.cuda.Event | None] = [None, None]
        self._queue(split, starts[0], size, total, host[0], dev[0], copied, 0)
        for i, start in enumerate(starts):
            if i + 1 < len(starts):
                self._queue(split, starts[i + 1], size, total, host[(i + 1) % 2],
                            dev[(i + 1) % 2], copied, (i + 1) % 2)  # fmt: skip
            yield start, dev[i % 2][: min(size, total - start)]

    def _queue(self, split, start, size, total, host, dev, copied, slot) -> None:
        """Fill ``host`` with the chunk at ``start`` (after its previous copy is done), then
        queue its copy to ``dev`` on the current stream."""
        n = min(size, total - start)
        source = self._pinned(split, start, n)
        if source is None:
            if copied[slot] is not None:
                copied[slot].synchronize()
            source = host[:n]
            self._read(split, start, source)
        dev[:n].copy_(source, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        copied[slot] = event

    def get(self, split: str) -> torch.Tensor:
        out = torch.empty(self._rows[split], self.width, dtype=self._dtype)
        self._read(split, 0, out)
        return out.to(self.device)


class DiskFeatures(_Staged):
    """Features in raw files ``<directory>/<split>.features``. The directory and files are
    new (never another's: created exclusively, never through a link); ``claim(path, kind)``,
    when given, records each before it is made (a run's record); ``release`` removes only
    them."""

    def __init__(self, directory: str | Path, rows: dict[str, int], width: int, dtype, device,
                 claim: Callable[[Path, str], object] | None = None):  # fmt: skip
        super().__init__(rows, width, dtype, device)
        self.directory = Path(directory)
        self._fds: dict[str, int] = {}
        self._made_dir = False
        try:
            if claim is not None:
                claim(self.directory, "dir")
            if not self.directory.is_dir() or self.directory.is_symlink():
                self.directory.mkdir()
                self._made_dir = True
            for split, n in rows.items():
                path = self._path(split)
                if claim is not None:
                    claim(path, "scratch")
                flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                self._fds[split] = os.open(path, flags, 0o666)
                os.ftruncate(self._fds[split], n * width * self._itemsize())
        except OSError as exc:
            self.release()
            raise WriteError(f"cannot store features in {self.directory}: {exc.strerror}") from None

    def _path(self, split: str) -> Path:
        return self.directory / f"{split}.features"

    def _itemsize(self) -> int:
        return torch.empty((), dtype=self._dtype).element_size()

    def _offset(self, start: int) -> int:
        return start * self.width * self._itemsize()

    def write(self, split: str, start: int, features: torch.Tensor) -> None:
        data = features.detach().to("cpu", self._dtype).contiguous()
        view, offset = _bytes_view(data), self._offset(start)
        try:
            with atomic.guarded(self._path(split).name):
                while view:
                    written = os.pwrite(self._fds[split], view, offset)
                    view, offset = view[written:], offset + written
        except OSError as exc:
            raise WriteError(f"cannot write {self._path(split)}: {atomic.reason(exc)}") from None

    def _read(self, split: str, start: int, out: torch.Tensor) -> None:
        view, offset = _bytes_view(out), self._offset(start)
        while view:
            got = os.preadv(self._fds[split], [view], offset)
            if got == 0:
                raise InputError(f"{self._path(split)} is shorter than recorded")
            view, offset = view[got:], offset + got

    def release(self, split: str | None = None) -> None:
        """Close and delete one split's file (or every file, and the directory if this store
        made it and nothing else is in it)."""
        for name in [split] if split is not None else list(self._fds):
            fd = self._fds.pop(name, None)
            if fd is not None:
                os.close(fd)
                self._path(name).unlink(missing_ok=True)
        if split is None and self._made_dir and not any(self.directory.iterdir()):
            self.directory.rmdir()
            self._made_dir = False


class HostFeatures(_Staged):
    """Features in host memory (pinned when the grade runs on CUDA)."""

    def __init__(self, rows: dict[str, int], width: int, dtype, device):
        super().__init__(rows, width, dtype, device)
        pin = self.device.type == "cuda"
        self._tensors = {
            split: torch.empty(n, width, dtype=dtype, pin_memory=pin) for split, n in rows.items()
        }

    def write(self, split: str, start: int, features: torch.Tensor) -> None:
        self._tensors[split][start : start + features.shape[0]].copy_(features)

    def _read(self, split: str, start: int, out: torch.Tensor) -> None:
        out.copy_(self._tensors[split][start : start + out.shape[0]])

    def _pinned(self, split: str, start: int, n: int) -> torch.Tensor | None:
        return self._tensors[split][start : start + n] if self.device.type == "cuda" else None

    def release(self, split: str | None = None) -> None:
        if split is None:
            self._tensors.clear()
        else:
            self._tensors.pop(split, None)

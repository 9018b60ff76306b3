"""Atomic, durable file writes: a file is either its old or its new content, never a mixture.

Each write goes to a temporary file beside the target (same directory, so the rename is atomic;
same suffix, so writers that pick a format from it still do), is flushed and fsynced, renamed
over the target, and the directory is fsynced so the rename survives a power loss.

``MGDL_FAST_TEST_CRASH=<file name>[:<n>]`` kills the process with SIGKILL just before the n-th
(default first) rename onto a file of that name: the tests' way to crash inside a write.
"""

from __future__ import annotations

import hashlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

from ..errors import InputError

CRASH_ENV = "MGDL_FAST_TEST_CRASH"
_renames: dict[str, int] = {}


class WriteError(InputError):
    """A run file could not be written (disk full, read-only, permissions)."""


def _crash_point(name: str) -> None:
    spec = os.environ.get(CRASH_ENV)
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _renames[name] = _renames.get(name, 0) + 1
    if _renames[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> None:
    """Have ``write(tmp)`` produce the file at a temporary path, then make it ``path``
    atomically and durably. Raises WriteError naming the file on any OS error."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _crash_point(path.name)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

"""Atomic, durable file writes: a file is either its old or its new content, never a mixture.

Each write goes to a temporary file beside the target (same directory, so the rename is atomic;
same suffix, so writers that pick a format from it still do), is flushed and fsynced, renamed
over the target, and the directory is fsynced so the rename survives a power loss. The
temporary name is the caller's (a run directory records it first: ``temp_name``) or a new
unique one; a failed write removes it. Files get the mode the umask gives (0644 under the usual
022), whatever mode the writing library chose. Any failure of the writing library (an
``OSError``, safetensors' ``SafetensorError``, PIL's, tifffile's, zarr's) is one ``WriteError``
naming the file.

Test hooks: ``MGDL_FAST_TEST_CRASH=<file name>[:<n>]`` kills the process with SIGKILL just
before the n-th (default first) rename onto a file of that name: a crash inside a write.
``MGDL_FAST_TEST_FULL=<file name>[:<n>]`` makes the n-th write of a file of that name fail as on
a full disk: the process may not write one byte to any file meanwhile (``RLIMIT_FSIZE`` 0), so
each library raises its own error, as it would with no space left.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import resource
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from ..errors import InputError

CRASH_ENV = "MGDL_FAST_TEST_CRASH"
FULL_ENV = "MGDL_FAST_TEST_FULL"
_counts: dict[tuple[str, str], int] = {}


class WriteError(InputError):
    """A file could not be written (disk full, read-only, permissions)."""


def _hook(env: str, name: str) -> bool:
    """Whether hook ``env`` fires for this write of a file called ``name``."""
    spec = os.environ.get(env)
    if not spec:
        return False
    target, _, count = spec.partition(":")
    if target != name:
        return False
    key = (env, name)
    _counts[key] = _counts.get(key, 0) + 1
    return _counts[key] == int(count or 1)


def _crash_point(name: str) -> None:
    if _hook(CRASH_ENV, name):
        os.kill(os.getpid(), signal.SIGKILL)


def full_disk(name: str) -> bool:
    """Whether the full-disk test hook fails this write of a file called ``name``."""
    return _hook(FULL_ENV, name)


@contextlib.contextmanager
def no_space() -> Iterator[None]:
    """Every file write in the block fails (EFBIG, the way a full disk fails: ENOSPC)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


def guarded(name: str) -> contextlib.AbstractContextManager:
    """The context a write of a file called ``name`` runs in: ``no_space`` when the
    full-disk test hook fires for it, else nothing."""
    return no_space() if full_disk(name) else contextlib.nullcontext()


def reason(exc: BaseException) -> str:
    """One line saying why a write failed, from any library's exception."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip()
    # safetensors: "Error while serializing: I/O error: No space left on device (os error 28)"
    found = re.search(r"(?:I/O error|message): \"?([^\"()]+?)\"?(?: \(os error \d+\)|\s*\}|$)",
                      text)  # fmt: skip
    if found:
        return found.group(1).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _umask_of_proc() -> int | None:
    """The process umask as Linux reports it (``/proc/self/status``, kernel 4.7 and later),
    read without changing it; None where it is not reported."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return None


def _umask_once() -> int:
    # Setting the umask to read it briefly gives any file another thread creates mode 0666:
    # done once, at import, and only where /proc does not say it.
    mask = _umask_of_proc()
    if mask is None:
        mask = os.umask(0)
        os.umask(mask)
    return mask


_IMPORT_UMASK = _umask_once()


def _umask() -> int:
    """The umask now (as /proc reports it), else the one read at import."""
    mask = _umask_of_proc()
    return _IMPORT_UMASK if mask is None else mask


def file_mode() -> int:
    """The mode a new file gets here: 0666 less the umask."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """The mode a new directory gets here: 0777 less the umask."""
    return 0o777 & ~_umask()


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def temp_name(name: str) -> str:
    """The temporary name a run directory records for writing ``name`` (``x.png`` ->
    ``.x.tmp.png``, in the same folder)."""
    head, _, base = name.rpartition("/")
    stem, dot, suffix = base.partition(".")
    temp = f"{base}.tmp" if base.startswith(".") else f".{stem}.tmp{dot}{suffix}"
    return f"{head}/{temp}" if head else temp


def unique_temp(path: Path) -> Path:
    """A new, empty temporary file beside ``path`` (same suffix), created exclusively."""
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.tmp", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    return Path(name)


def atomic_write(
    path: str | Path, write: Callable[[Path], object], *, tmp: Path | None = None
) -> None:
    """Have ``write(tmp)`` produce the file at a temporary path, then make it ``path``
    atomically and durably. ``tmp``: the temporary path (the caller's own; anything there is
    replaced), else a new unique one. Raises WriteError naming the file on any failure."""
    path = Path(path)
    made: Path | None = None
    try:
        if tmp is None:
            tmp = unique_temp(path)
        else:
            tmp.unlink(missing_ok=True)
        made = tmp
        with guarded(path.name):
            write(tmp)
        commit_temp(tmp, path)
        made = None
    except InputError:
        raise
    except Exception as exc:  # every writing library raises its own types
        raise WriteError(f"cannot write {path}: {reason(exc)}") from None
    finally:
        if made is not None:
            made.unlink(missing_ok=True)


def commit_temp(tmp: Path, path: Path) -> None:
    """Make the finished temporary file ``tmp`` the file ``path``: its mode from the umask,
    fsync, rename (the crash test hook's point), directory fsync."""
    try:
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fchmod(fd, file_mode())
            os.fsync(fd)
        finally:
            os.close(fd)
        _crash_point(path.name)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        raise WriteError(f"cannot write {path}: {reason(exc)}") from None


def write_bytes(path: str | Path, data: bytes, *, tmp: Path | None = None) -> None:
    atomic_write(path, lambda out: out.write_bytes(data), tmp=tmp)


def write_text(path: str | Path, text: str, *, tmp: Path | None = None) -> None:
    write_bytes(path, text.encode(), tmp=tmp)


def append_text(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` (created with the umask's mode), never through a link."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        try:
            with guarded(path.name):
                os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else reason(exc)
        raise WriteError(f"cannot write {path}: {why}") from None


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

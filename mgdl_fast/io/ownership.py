"""What a run directory's files are: the record a run keeps of every name it writes.

A run claims its directory by creating ``.mgdl_fast_run`` (exclusively, before any other file)
and then records in it, one JSON line each, every run-relative name it is about to create:
the name is appended and fsynced before the file exists, so whatever a crash leaves behind is
recorded. Nothing else in the directory is the run's: the user's own files beside or inside
a run are never written, truncated or removed (``remove`` refuses a name that is not
recorded), and a file the run would write whose name the user already holds is refused.

Kinds: ``file`` (an output kept in the run), ``state`` (a resumable state file: only the
current one is kept), ``temp`` (a temporary name an atomic write renames from), ``scratch``
(a file the run needs only while it trains, e.g. features on disk) and ``dir`` (a directory
the run made; removed only when empty).

Names are relative POSIX paths without ``.`` or ``..`` components; ``inside`` turns one into
a path and refuses a symbolic link anywhere on the way, so no read, write or lock follows a
link out of the run.

Record format (version 1): the first line ``{"format": "mgdl_fast.run/1"}``, then
``{"name": ..., "kind": ...}`` per line. An empty file is a record whose creator stopped
before writing its first line; a last line without its newline (a crash mid-append) is
dropped, so the record is always readable.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path, PurePosixPath

from ..errors import InputError
from . import atomic

RECORD = ".mgdl_fast_run"
FORMAT = "mgdl_fast.run/1"
KINDS = ("file", "state", "temp", "scratch", "dir")


def check_name(name: object, source: object = "a run") -> str:
    """``name`` if it is a plain run-relative path (no absolute path, ``.``, ``..``, empty
    component, backslash or NUL); InputError naming ``source`` otherwise."""
    if isinstance(name, str) and name and "\\" not in name and "\0" not in name:
        path = PurePosixPath(name)
        parts = path.parts
        plain = all(p not in (".", "..", "") for p in parts) and "/".join(parts) == name
        if plain and not path.is_absolute():
            return name
    raise InputError(f"{source}: {name!r} is not a name inside the run directory")


def inside(root: Path, name: str) -> Path:
    """``root / name``, refusing (one line) a symbolic link at it or on the way to it."""
    path = root
    for part in PurePosixPath(check_name(name, root)).parts:
        path = path / part
        if path.is_symlink():
            raise InputError(
                f"{path} is a symbolic link; mgdl-fast does not follow links in a run directory "
                "(replace it with the file itself or choose another --out)"
            )
    return path


def is_file(root: Path, name: str) -> bool:
    """Whether ``root / name`` is a regular file (a link is not followed: False)."""
    try:
        return stat.S_ISREG(os.lstat(root / name).st_mode)
    except OSError:
        return False


def exists(path: Path) -> bool:
    """Whether anything (a file, a directory, a dangling link) is at ``path``."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


class RunRecord:
    """The names a run directory's run wrote (``kinds``: name -> kind), appended as it goes."""

    def __init__(self, root: Path, kinds: dict[str, str], fd: int, torn_at: int | None = None):
        self.root, self.kinds, self._fd = root, kinds, fd
        # Where a torn last line starts: cut off before the next append (under the lock).
        self._torn_at = torn_at

    @property
    def path(self) -> Path:
        return self.root / RECORD

    @classmethod
    def create(cls, root: Path) -> RunRecord:
        """Claim ``root`` with a new record; FileExistsError when one appeared meanwhile."""
        path = root / RECORD
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        except FileExistsError:
            raise
        except OSError as exc:
            raise atomic.WriteError(f"--out {root} is not writable: {exc.strerror}") from None
        record = cls(root, {}, fd)
        try:
            record._append({"format": FORMAT})
            atomic.fsync_dir(root)
        except BaseException:
            record.close()
            path.unlink()
            raise
        return record

    @classmethod
    def read(cls, root: Path) -> RunRecord | None:
        """The record of ``root`` (opened for appending), None when there is none; refuses a
        damaged one or a link, with one line naming it."""
        path = root / RECORD
        if not exists(path):
            return None
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOFOLLOW)
        except OSError as exc:
            raise InputError(f"cannot open {path}: {exc.strerror}") from None
        try:
            data = _read_all(fd)
            kinds = _parse(path, data)
        except BaseException:
            os.close(fd)
            raise
        complete = data.rfind(b"\n") + 1
        return cls(root, kinds, fd, complete if complete != len(data) else None)

    def owns(self, name: str) -> bool:
        return name in self.kinds

    def own(self, name: str, kind: str = "file") -> Path:
        """Record ``name`` (once) before it is created; returns its path (no link on the way)."""
        assert kind in KINDS, kind
        path = inside(self.root, name)
        if name not in self.kinds:
            self._append({"name": name, "kind": kind})
            self.kinds[name] = kind
        return path

    def _append(self, entry: dict) -> None:
        """Append ``entry`` as one line; a record left empty (its creator stopped, or a torn
        first line was cut) gets the format line first, so it stays readable."""
        header = {"format": FORMAT}
        line = (json.dumps(entry) + "\n").encode()
        try:
            if self._torn_at is not None:
                os.ftruncate(self._fd, self._torn_at)
                self._torn_at = None
            if os.lseek(self._fd, 0, os.SEEK_END) == 0 and entry != header:
                line = (json.dumps(header) + "\n").encode() + line
            with atomic.guarded(RECORD):
                os.write(self._fd, line)
            os.fsync(self._fd)
        except OSError as exc:
            raise atomic.WriteError(f"cannot write {self.path}: {exc.strerror or exc}") from None

    def named(self, *kinds: str) -> list[str]:
        """Recorded names of these kinds, in the order they were recorded."""
        return [name for name, kind in self.kinds.items() if kind in kinds]

    def remove(self, name: str) -> None:
        """Remove ``name`` when it is recorded and present: a file (or a link, never its
        target) is unlinked, a directory removed only when empty; InputError when a folder on
        the way is a symbolic link."""
        if name not in self.kinds:
            raise InputError(f"{self.root / name} is not a file of this run; it is kept")
        # A link on the way (a folder of the run replaced by one) would lead out of the run:
        # refused; a link at the name itself is removed, never its target.
        folder, _, base = name.rpartition("/")
        path = (inside(self.root, folder) if folder else self.root) / base
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise InputError(f"cannot remove {path}: {exc.strerror}") from None
        try:
            if stat.S_ISDIR(mode):
                if not any(os.scandir(path)):
                    os.rmdir(path)
            else:
                os.unlink(path)
        except OSError as exc:
            raise InputError(f"cannot remove {path}: {exc.strerror}") from None

    def remove_all(self, *kinds: str) -> None:
        """Remove every recorded name of these kinds (files first, directories deepest first)."""
        names = self.named(*kinds)
        for name in [n for n in names if self.kinds[n] != "dir"]:
            self.remove(name)
        for name in sorted((n for n in names if self.kinds[n] == "dir"), key=len, reverse=True):
            self.remove(name)

    def compact(self) -> None:
        """Forget recorded names that are no longer there (so a file a user puts there later
        is never taken for the run's): the record is rewritten atomically, its temporary
        name recorded first."""
        temp = atomic.temp_name(RECORD)
        self.own(temp, "temp")
        kept = {n: k for n, k in self.kinds.items() if n != temp and exists(self.root / n)}
        lines = [{"format": FORMAT}, {"name": temp, "kind": "temp"}]
        lines += [{"name": n, "kind": k} for n, k in kept.items()]
        text = "".join(json.dumps(line) + "\n" for line in lines)
        atomic.write_text(self.path, text, tmp=self.root / temp)
        self.close()
        self._fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW)
        self.kinds, self._torn_at = {temp: "temp", **kept}, None

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def _read_all(fd: int) -> bytes:
    chunks = []
    while chunk := os.read(fd, 1 << 16):
        chunks.append(chunk)
    return b"".join(chunks)


def _parse(path: Path, data: bytes) -> dict[str, str]:
    """name -> kind from a record's bytes; a torn last line is ignored (it was being written
    when a crash came, before the file it names was created)."""
    complete = data[: data.rfind(b"\n") + 1]
    lines = complete.decode(errors="replace").splitlines()
    if not lines:
        return {}
    try:
        header = json.loads(lines[0])
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise InputError(f"{path}: field format must be {FORMAT!r} (line 1)")
    kinds: dict[str, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if not isinstance(entry, dict) or entry.get("kind") not in KINDS:
            raise InputError(f"{path}: line {number} has no valid field kind ({', '.join(KINDS)})")
        kinds[check_name(entry.get("name"), f"{path}: line {number}, field name")] = entry["kind"]
    return kinds


def foreign_entry(root: Path, record: RunRecord | None) -> Path | None:
    """One entry of ``root`` the run did not record (the first by name), or None."""
    known = set() if record is None else set(record.kinds) | {RECORD}
    for entry in sorted(os.listdir(root)):
        if entry not in known:
            return root / entry
    return None


__all__ = ["FORMAT", "RECORD", "RunRecord", "check_name", "foreign_entry", "inside", "is_file"]

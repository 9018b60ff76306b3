"""Self-check verdicts kept on disk, so a kernel backend is proven once per machine and code.

A verdict is keyed by everything that can change a kernel's behaviour: the backend, the device
name and driver, the package version and commit, a digest of the backend's sources (the Triton
kernels, the ``_C`` binary), the torch and Triton versions, the shape class, the input dtype
and the options. Verdicts live in one JSON file of this package's own in
``$MGDL_FAST_CACHE_DIR`` (default ``$XDG_CACHE_HOME/mgdl_fast`` or ``~/.cache/mgdl_fast``),
replaced atomically; ``mgdl-fast info --recheck`` (``clear()``) empties it. A file at that
path that this package did not write is neither read nor replaced.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

CACHE_ENV = "MGDL_FAST_CACHE_DIR"
FILE_NAME = "selfcheck-verdicts.json"
FORMAT = "mgdl_fast self-check verdicts"
VERSION = 1
_log = logging.getLogger("mgdl_fast")


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mgdl_fast"


def path() -> Path:
    return cache_dir() / FILE_NAME


@functools.cache
def driver_version() -> str:
    """The NVIDIA driver's version (NVML), else the CUDA driver API version, else 'none'."""
    try:
        nvml = ctypes.CDLL("libnvidia-ml.so.1")
        text = ctypes.create_string_buffer(96)
        if nvml.nvmlInit_v2() == 0 and nvml.nvmlSystemGetDriverVersion(text, 96) == 0:
            return text.value.decode()
    except (OSError, AttributeError):
        pass
    try:
        value = ctypes.c_int()
        if ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(value)) == 0:
            return f"cuda-driver-api-{value.value}"
    except (OSError, AttributeError):
        pass
    return "none"


@functools.cache
def digest(files: tuple[Path, ...]) -> str:
    """sha256 over the contents of ``files`` (a missing file counts as its name only)."""
    h = hashlib.sha256()
    for file in files:
        h.update(str(file.name).encode())
        if file.is_file():
            h.update(file.read_bytes())
    return h.hexdigest()[:16]


def key_hash(description: dict) -> str:
    return hashlib.sha256(json.dumps(description, sort_keys=True).encode()).hexdigest()


def _read() -> dict | None:
    """The verdict file's contents; {} when absent; None when unreadable or not ours."""
    file = path()
    if not file.exists() and not file.is_symlink():
        return {}
    if file.is_symlink() or not file.is_file():
        _log.warning("self-check cache %s is not a regular file; not used", file)
        return None
    try:
        data = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        _log.warning("self-check cache %s is unreadable (%s); not used", file, exc)
        return None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        _log.warning("%s was not written by mgdl_fast; not used", file)
        return None
    verdicts = data.get("verdicts")
    return verdicts if data.get("version") == VERSION and isinstance(verdicts, dict) else {}


def _write(verdicts: dict) -> None:
    """Replace the verdict file atomically (a rename replaces a link, never writes through)."""
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"format": FORMAT, "version": VERSION, "verdicts": verdicts}, indent=1)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{FILE_NAME}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text + "\n")
        os.replace(tmp, folder / FILE_NAME)
    except BaseException:
        os.unlink(tmp)
        raise


def load(description: dict) -> dict | None:
    """The stored verdict for ``description``, or None."""
    verdicts = _read() or {}
    entry = verdicts.get(key_hash(description))
    return entry.get("verdict") if isinstance(entry, dict) else None


def store(description: dict, verdict: dict) -> None:
    """Keep ``verdict``; a cache that cannot be written only costs a recheck next time."""
    verdicts = _read()
    if verdicts is None:
        return
    verdicts[key_hash(description)] = {"key": description, "verdict": verdict}
    try:
        _write(verdicts)
    except OSError as exc:
        _log.warning("cannot keep the self-check verdict in %s: %s", cache_dir(), exc)


def clear() -> int:
    """Forget every stored verdict; returns how many there were."""
    verdicts = _read()
    if not verdicts:
        return 0
    _write({})
    return len(verdicts)

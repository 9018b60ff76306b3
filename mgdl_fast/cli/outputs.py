"""Files a study command (``sweep-lr``, ``approx``) writes into a user's ``--out`` folder.

Its outputs are named before any work: ``check_outputs`` refuses, in one line, a name that is a
symbolic link (never written through) or a folder, and a file that exists unless the command may
replace it (``--overwrite``, as ``predict`` does, or a resumed sweep's own files). Nothing is
removed then: each output is replaced atomically (``io.atomic``: figures through
``atomic_write``, whose temporary file keeps the suffix matplotlib reads the format from) once
the work has succeeded, so a failed or interrupted command leaves the folder as it found it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from ..errors import InputError
from ..io.atomic import reason, write_text
from ..io.environment import clean_json


def check_outputs(paths: Iterable[Path], overwrite: bool) -> None:
    """Refuse (one line) an output at a link or a folder, or one that exists unless
    ``overwrite``."""
    for path in paths:
        if path.is_symlink():
            raise InputError(
                f"{path} is a symbolic link; mgdl-fast does not write through links (remove it "
                "or choose another --out)"
            )
        if path.is_dir():
            raise InputError(f"{path} is a directory; it is kept (choose another --out)")
        if path.exists() and not overwrite:
            raise InputError(f"{path} exists; pass --overwrite to replace it")


def make_out(out: Path) -> None:
    """The ``--out`` folder, made if needed (one line when it cannot be)."""
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot make --out {out}: {reason(exc)}") from None


def write_json(path: Path, data: dict, indent: int = 1) -> None:
    """``data`` as JSON (NaN and infinities as null), written atomically."""
    write_text(path, json.dumps(clean_json(data), indent=indent) + "\n")


__all__ = ["check_outputs", "make_out", "write_json"]

"""Ctrl-C while the ``mgdl-fast`` command is still importing: one line and exit 130.

The console script imports the package (torch and the ops, about 1.5 s here) before
``cli.main`` runs, so a Ctrl-C in that time would print the import's traceback. The guard sits
around those imports and acts only in the command's own process (``mgdl-fast`` or
``python -m mgdl_fast``): a program that imports mgdl_fast keeps its ``KeyboardInterrupt``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


def _is_command() -> bool:
    if os.path.basename(sys.argv[0] if sys.argv else "") == "mgdl-fast":
        return True
    # While ``python -m mgdl_fast`` imports the package, sys.argv[0] is still "-m".
    argv = getattr(sys, "orig_argv", [])
    return any(a == "-m" and b == "mgdl_fast" for a, b in zip(argv, argv[1:]))


@contextlib.contextmanager
def interrupt_ends_command() -> Iterator[None]:
    """Turn a ``KeyboardInterrupt`` raised inside into exit 130 when this is the command."""
    try:
        yield
    except KeyboardInterrupt:
        if not _is_command():
            raise
        print("mgdl-fast: interrupted while starting", file=sys.stderr)
        raise SystemExit(130) from None

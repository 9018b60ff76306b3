"""``mgdl_fast.kernels`` in a source tree that was never installed.

An install maps the top-level ``kernels/`` folder into the package as ``mgdl_fast.kernels``
(pyproject.toml); a bare copy of the tree (a GPU machine handed the working tree, or the
checkout put first on ``sys.path`` beside a non-editable install) has the folder only beside
the package. There it is registered under that name, so the Triton backend imports the same way
in both.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

NAME = "mgdl_fast.kernels"


def ensure_kernels() -> None:
    """Register ``<tree>/kernels`` as ``mgdl_fast.kernels`` when no installed one is found (a
    missing folder leaves the import to fail with its own error)."""
    if NAME in sys.modules or importlib.util.find_spec(NAME) is not None:
        return
    folder = Path(__file__).resolve().parents[3] / "kernels"
    init = folder / "__init__.py"
    if not init.is_file():
        return
    spec = importlib.util.spec_from_file_location(
        NAME, init, submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module
    spec.loader.exec_module(module)

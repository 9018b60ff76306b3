"""Fixtures of the cuda backend's tests: the extension, its SASS, and a backend that must run.

Where the extension must exist (CI installs with MGDL_FAST_CUDA=ON) or a GPU is present, a
missing extension, tool or unusable backend fails the tests instead of skipping them
(issue 13, C8): a GPU machine whose driver is older than _C's runtime needs is a failure.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]


def _required() -> bool:
    return os.environ.get("MGDL_FAST_CUDA") == "ON" or torch.cuda.is_available()


@pytest.fixture(scope="session")
def ext():
    try:
        return importlib.import_module("mgdl_fast._C")
    except ImportError as exc:
        if _required():
            raise
        pytest.skip(f"mgdl_fast._C was not built: {exc}")


@pytest.fixture(scope="session")
def report():
    """bench/kernel_report_cuda.py as a module."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("bench.kernel_report_cuda")


@pytest.fixture(scope="session")
def sass(report):
    """sass(ext, arch): cuobjdump -sass of the extension for one architecture."""

    def run(ext, arch: str) -> str:
        try:
            tool = report.find_tool("cuobjdump")
        except report.ToolMissing as exc:
            if _required():
                raise
            pytest.skip(str(exc))
        out = subprocess.run([tool, "-sass", "-arch", arch, ext.__file__], capture_output=True,
                             text=True)  # fmt: skip
        assert out.returncode == 0, out.stderr
        return out.stdout

    return run


@pytest.fixture
def cuda_ready():
    """The cuda backend can run here: with a GPU present, a failure (not a skip) otherwise."""
    from mgdl_fast import backends

    why = backends.unavailable_reason("cuda")
    if why is not None:
        if torch.cuda.is_available():
            pytest.fail(f"a GPU is present but the cuda backend cannot run: {why}")
        pytest.skip(f"cuda backend unavailable: {why}")

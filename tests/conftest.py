"""Seeds, markers and the Triton interpreter switch for the test suite."""

from __future__ import annotations

import os

import imageio.v3 as iio
import pytest
import torch

# Triton kernels can only run on a CPU machine under the interpreter, and the variable must be
# set before any @triton.jit function is created.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

SHARED_IMAGES = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "images")


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (torch.cuda.is_available() is False)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _verdict_cache(tmp_path_factory, monkeypatch):
    """Self-check verdicts go to a folder of the test session's, never the user's cache."""
    if "MGDL_FAST_CACHE_DIR" not in os.environ:
        monkeypatch.setenv("MGDL_FAST_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture
def one_thread():
    """One intra-op thread for the test: small eigh calls (Hessians, Lanczos) are far faster
    that way on this project's CPU machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _fp32_products(request, monkeypatch):
    """fp32 products unless a test says otherwise: the numbers tests assert must not depend on
    whether this CPU has bf16 instructions (auto picks bf16 there). The kernel backends' tests
    (tests/backends/) choose their precision themselves; ``@pytest.mark.auto_precision`` tests
    the automatic choice."""
    if "auto_precision" in request.keywords or "/backends/" in str(request.node.fspath):
        return
    monkeypatch.setenv("MGDL_FAST_PRECISION", "fp32")


@pytest.fixture
def shared_image():
    """Path of an image in ../shared/images, skipping the test when the folder is absent."""

    def get(name: str) -> str:
        path = os.path.join(SHARED_IMAGES, name)
        if not os.path.exists(path):
            pytest.skip(f"test image {name} not found in {SHARED_IMAGES}")
        return path

    return get


@pytest.fixture
def tiny_png(tmp_path):
    """A 16x16 8-bit grayscale PNG with a smooth pattern."""
    from .helpers import tiny_pattern  # after the interpreter switch above: it imports mgdl_fast

    path = tmp_path / "tiny.png"
    iio.imwrite(path, tiny_pattern())
    return path

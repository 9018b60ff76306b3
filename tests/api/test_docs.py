"""The examples of docs/API.md and of the README's Python API section run as written (the
README's image fit cut down to a small image and a few epochs), and the package promises the
docs make: importing mgdl_fast loads no JAX and no kernel backend, every exported name exists."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

import mgdl_fast as mf

from ..helpers import small_camera

ROOT = Path(__file__).resolve().parents[2]
REQUIRES = re.compile(r"^# requires: (\w+)")


def python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def run_blocks(blocks: list[str], namespace: dict) -> None:
    for block in blocks:
        needs = REQUIRES.match(block)
        if needs and importlib.util.find_spec(needs.group(1)) is None:
            pytest.skip(f"an example needs {needs.group(1)}, which is not installed")
        exec(compile(block, "<example>", "exec"), namespace)


# Dynamo, AOTAutograd and forward-mode AD still call torch.jit internally.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script:DeprecationWarning")


def test_the_api_page_examples_run():
    blocks = python_blocks((ROOT / "docs" / "API.md").read_text())
    assert len(blocks) >= 7
    run_blocks(blocks, {})


def test_the_readme_python_api_examples_run(tmp_path, monkeypatch, tiny_png):
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API") : readme.index("## Backends")]
    blocks = python_blocks(section)
    assert len(blocks) == 3
    # CPU scale: a 32x32 image, 2 grades of width 16, 3 epochs, a 64x64 render.
    fit = blocks[0]
    for old, new in [
        ('mf.load_image("../shared/images/cameraman.tif")', "SMALL_IMAGE"),
        ("grades=4, width=128", "grades=2, width=16"),
        ("epochs=300", "epochs=3"),
        ("render(1024, 1024)", "render(64, 64)"),
    ]:
        assert old in fit, old
        fit = fit.replace(old, new)
    service = blocks[1]
    for old, new in [
        ('"../shared/images/cameraman.tif"', repr(str(tiny_png))),
        ("4, 128", "2, 16"),
        ("epochs = 300", "epochs = 3"),
    ]:
        assert old in service, old
        service = service.replace(old, new)
    monkeypatch.chdir(tmp_path)
    run_blocks([fit, service, blocks[2]], {"SMALL_IMAGE": small_camera(32)})
    assert (tmp_path / "runs" / "cam300" / "run.toml").is_file()


def test_importing_loads_neither_jax_nor_a_kernel_backend():
    code = (
        "import sys, mgdl_fast; "
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('jax', 'triton') "
        "or m.startswith(('mgdl_fast._C', 'mgdl_fast.kernels', 'mgdl_fast.jax'))]; "
        "assert not loaded, loaded; "
        "import torch; assert hasattr(torch.ops.mgdl_fast, 'block_fwd')"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_exported_name_exists():
    missing = [name for name in mf.__all__ if not hasattr(mf, name)]
    assert not missing
    assert mf.ops.block_forward is mf.block_forward
    assert {"Grade", "MultiGrade"} <= set(mf.nn.__all__)

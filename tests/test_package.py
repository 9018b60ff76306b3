"""Package-level promises: importing is free of side effects; rendering is chunk-independent."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import torch

import mgdl_fast
from mgdl_fast import BlockParams, BlockShape, MultiGradeModel


def test_import_loads_no_kernel_backend():
    code = (
        "import sys, mgdl_fast; "
        "loaded = [m for m in sys.modules if m.startswith(('triton', 'mgdl_fast._C', "
        "'mgdl_fast._triton', 'mgdl_fast._cuda', 'mgdl_fast.kernels'))]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_import_leaves_matplotlib_alone():
    """Plotting loads matplotlib (and picks its Agg backend) when a run draws its curves, never
    at ``import mgdl_fast``: a notebook's own backend must survive the import."""
    code = "import sys, mgdl_fast; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_module_imports_a_private_torch_module_at_import_time():
    """Private torch modules (torch._subclasses, torch._functorch, ...) change between
    releases: mgdl_fast imports them only inside the functions that need them, never at the
    top of a module (an import there would make ``import mgdl_fast`` depend on them)."""
    found = []
    for path in Path(mgdl_fast.__file__).parent.rglob("*.py"):
        for node in ast.parse(path.read_text()).body:
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            found += [f"{path.name}: {n}" for n in names if n.startswith("torch._")]
    assert not found, found


def test_render_is_independent_of_the_chunk_size():
    grades = [BlockParams.init(BlockShape(2, 16, 2, 1), seed=0)]
    grades += [BlockParams.init(BlockShape(16, 16, 2, 1), seed=k) for k in (1, 2)]
    model = MultiGradeModel(grades, scales=[1.0, 0.5, 0.25])
    whole = model.render(37, 23, chunk_size=10_000)
    chunked = model.render(37, 23, chunk_size=7)
    assert whole.shape == (37, 23, 1)
    # GEMM blocking depends on the row count, so chunks may differ from one call by an ulp.
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-7)


def test_model_rejects_a_grade_that_does_not_fit():
    model = MultiGradeModel([BlockParams.init(BlockShape(2, 16, 2, 1), seed=0)])
    try:
        model.append(BlockParams.init(BlockShape(32, 32, 2, 1), seed=0))
    except ValueError as exc:
        assert "reads 32 features but grade 1 has width 16" in str(exc)
    else:
        raise AssertionError("a grade with the wrong input width was accepted")

"""bench/ensure_deps.py: which carried wheels and runtime requirements are missing."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

ROOT = Path(__file__).parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("ensure_deps", ROOT / "bench" / "ensure_deps.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_run_toml_writer_the_gpu_image_lacks_is_carried():
    assert [w.name.split("-")[0] for w in (ROOT / "bench" / "wheels").glob("*.whl")] == ["tomli_w"]


def test_only_wheels_of_distributions_not_installed_are_installed(tmp_path):
    deps = _module()
    carried = next((ROOT / "bench" / "wheels").glob("tomli_w-*.whl"))
    shutil.copy(carried, tmp_path)  # installed here: left alone
    absent = tmp_path / "mgdl_fast_absent_probe-1.0-py3-none-any.whl"
    shutil.copy(carried, absent)
    assert deps.missing_wheels(tmp_path) == [absent]


def test_missing_runtime_requirements_honour_markers(tmp_path):
    deps = _module()
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[project]\ndependencies = ["numpy>=1", "mgdl-fast-absent-probe>=1",'
        " \"also-absent>=1; python_version < '3.0'\"]\n"
    )
    assert deps.missing_requirements(pyproject) == ["mgdl-fast-absent-probe>=1"]
    assert deps.missing_requirements() == []

"""Install the carried wheels of dependencies the GPU image lacks, before the suite imports.

The GPU machine has no network and its image lacks some of mgdl_fast's pure-Python runtime
dependencies (tomli-w, which writes every run's run.toml); bench/wheels/ carries them, and the
suite installs each one whose distribution is not installed (no index, no dependencies: they
have none). Then it lists the runtime requirements still missing, for the log; the package
imports without them (zarr, for instance, loads only for .zarr images).

    python bench/ensure_deps.py            # what bench/gpu_suite.sh runs first
"""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parent.parent
WHEELS = ROOT / "bench" / "wheels"


def _installed(name: str) -> bool:
    try:
        metadata.distribution(name)
    except metadata.PackageNotFoundError:
        return False
    return True


def missing_wheels(folder: Path = WHEELS) -> list[Path]:
    """The wheels in ``folder`` whose distribution is not installed."""
    return [
        w for w in sorted(folder.glob("*.whl")) if not _installed(parse_wheel_filename(w.name)[0])
    ]


def missing_requirements(pyproject: Path = ROOT / "pyproject.toml") -> list[str]:
    """The project's runtime requirements (for this Python) with no installed distribution."""
    project = tomllib.loads(pyproject.read_text())["project"]
    requirements = [Requirement(line) for line in project["dependencies"]]
    return [
        str(r)
        for r in requirements
        if (r.marker is None or r.marker.evaluate()) and not _installed(canonicalize_name(r.name))
    ]


def main() -> int:
    wheels = missing_wheels()
    if wheels:
        install = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps"]
        done = subprocess.run([*install, *map(str, wheels)], check=False)
        print(f"installed {', '.join(w.name for w in wheels)}: exit {done.returncode}")
        if done.returncode:
            return done.returncode
    still = missing_requirements()
    print("runtime requirements missing: " + (", ".join(still) if still else "none"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What every result records besides its numbers: versions, machine, device and commit; and
JSON writing that turns NaN/inf into null. The one place either is looked up."""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

from .._version import __version__

COMMIT_ENV = "MGDL_FAST_COMMIT"


@functools.cache
def commit() -> str | None:
    """The source checkout's commit (``-dirty`` when modified), ``$MGDL_FAST_COMMIT`` when
    set (a copy without .git, as on a GPU machine), else None."""
    if os.environ.get(COMMIT_ENV):
        return os.environ[COMMIT_ENV]
    root = Path(__file__).resolve().parents[2]
    # Only a source checkout: an installed package's parents are not the project's repository.
    if not (root / ".git").exists() or not (root / "pyproject.toml").is_file():
        return None
    try:
        out = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--abbrev=12"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


@functools.cache
def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str | None:
    import importlib.metadata

    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def environment(device: torch.device | str | None = None) -> dict:
    """Versions, the machine, the device and the commit, recorded with every result."""
    env = {
        "mgdl_fast": __version__,
        "commit": commit(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "triton": _version("triton"),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu": cpu_name(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device is not None:
        device = torch.device(device)
        env["device"] = str(device)
        if device.type == "cuda":
            env["device_name"] = torch.cuda.get_device_name(device)
            env["cuda"] = torch.version.cuda
    return env


def clean_json(value):
    """JSON has no NaN/inf: write them as null (a diverged loss)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean_json(v) for v in value]
    return value


def write_json(path: str | Path, data: dict) -> None:
    Path(path).write_text(json.dumps(clean_json(data), indent=1) + "\n")

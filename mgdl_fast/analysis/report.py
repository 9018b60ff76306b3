"""What every analysis result records besides its numbers: versions, machine and commit."""

from __future__ import annotations

import json
import math
import platform
import subprocess
from pathlib import Path

import torch

from ..outputs import environment


def _commit() -> str | None:
    """The source checkout's commit (with ``-dirty`` when modified), or None outside git."""
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


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_environment(device: torch.device) -> dict:
    """The engine's environment record plus the CPU model and the git commit."""
    return {**environment(device), "cpu": _cpu_name(), "commit": _commit()}


def _clean(value):
    """JSON has no NaN/inf: write them as null (a diverged loss)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def write_json(path: str | Path, data: dict) -> None:
    Path(path).write_text(json.dumps(_clean(data), indent=1) + "\n")

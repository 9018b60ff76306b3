"""``python -m mgdl_fast.info``: versions, devices and the backend matrix with reasons."""

from __future__ import annotations

import importlib.metadata
import platform

import torch

from . import dispatch
from .block import BlockParams, BlockShape


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _probe_inputs(device: str) -> tuple[torch.Tensor, BlockParams]:
    """A grade-2 block of the papers' size, to ask each backend what it can serve."""
    params = BlockParams.init(BlockShape(128, 128, 2, 1), seed=0, device=device)
    return torch.zeros(4, 128, device=device), params


def report() -> str:
    from . import __version__

    lines = [f"mgdl_fast {__version__}", f"python {platform.python_version()}"]
    for package in ("torch", "triton", "numpy", "scikit-image"):
        lines.append(f"{package} {_version(package)}")
    cuda = torch.cuda.is_available()
    lines.append(f"CUDA available: {cuda}")
    if cuda:
        lines += [
            f"  cuda:{i} {torch.cuda.get_device_name(i)}" for i in range(torch.cuda.device_count())
        ]
    lines.append("backends (op: status for a [N, 128] grade-2 block):")
    devices = ["cpu"] + (["cuda"] if cuda else [])
    for name in dispatch.backend_names():
        why = dispatch.unavailable_reason(name)
        lines.append(f"  {name}: {'available' if why is None else 'unavailable: ' + why}")
        if why is not None:
            continue
        for device in devices:
            x, params = _probe_inputs(device)
            for op in dispatch.OPS:
                reasons = dispatch.reasons(name, op, x, params)
                lines.append(f"    {device} {op}: {'ok' if not reasons else '; '.join(reasons)}")
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())

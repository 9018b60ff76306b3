"""``python -m mgdl_fast.info``: versions, devices, the backend matrix with reasons, and the
kernels' self-checks on every CUDA device (verdicts kept on disk are reused; ``recheck``
forgets them first)."""

from __future__ import annotations

import torch

from . import backends
from .backends import selfcheck, verdicts
from .backends.base import Options, shape_name
from .block import BlockShape
from .io.environment import environment

# The papers' headline grades: grade 1 reads coordinates, later grades 128 cached features.
PROBE_SHAPES = (BlockShape(2, 128, 2, 1), BlockShape(128, 128, 2, 1))


def _matrix(devices: list[str]) -> list[str]:
    lines = []
    for name in backends.backend_names():
        why = backends.unavailable_reason(name)
        lines.append(f"  {name}: {'available' if why is None else 'unavailable: ' + why}")
        if why is not None:
            continue
        for device in devices:
            for shape in PROBE_SHAPES:
                dtype = torch.float32 if shape.in_dim != shape.width else torch.bfloat16
                reasons = backends.reasons(name, shape, device, dtype, Options.from_env())
                status = "ok" if not reasons else "; ".join(reasons)
                lines.append(f"    {device} {shape_name(shape)} {dtype}: {status}")
    return lines


def _self_checks(devices: list[str]) -> list[str]:
    """Bind every probe shape under auto on each CUDA device: runs the self-checks."""
    for device in devices:
        if device == "cpu":
            continue
        for shape in PROBE_SHAPES:
            dtype = torch.float32 if shape.in_dim != shape.width else torch.bfloat16
            try:
                backends.bind(shape, device=device, rows=1, input_dtype=dtype, backend="auto")
            except Exception as exc:  # shown, not raised: info reports what does not work
                return [f"  {device} {shape_name(shape)}: {exc}"]
    results = selfcheck.results()
    if not results:
        return ["  none run (auto picks the torch backend for CPU tensors)"]
    return [f"  {key}: {_verdict_line(r)}" for key, r in results.items()]


def _verdict_line(verdict: dict) -> str:
    where = "kept from an earlier run" if verdict.get("cached") else "checked now"
    if not verdict["passed"]:
        return f"FAILED ({where}): {verdict.get('reason')}"
    return (
        f"passed ({where}; {verdict['worst']} error {verdict['error']:.2e}, tolerance "
        f"{verdict['tolerance']:.0e}, rows {verdict.get('rows')}, NaN probe {verdict['nan_probe']})"
    )


def report(recheck: bool = False) -> str:
    env = environment()
    lines = [f"mgdl_fast {env['mgdl_fast']} (commit {env['commit']})", f"python {env['python']}"]
    lines += [f"{p} {env[p]}" for p in ("torch", "triton", "numpy")]
    cuda = torch.cuda.is_available()
    lines.append(f"CUDA available: {cuda}")
    devices = ["cpu"]
    if cuda:
        for i in range(torch.cuda.device_count()):
            lines.append(f"  cuda:{i} {torch.cuda.get_device_name(i)}")
            devices.append(f"cuda:{i}")
    lines.append("backends (for the headline grade shapes):")
    lines += _matrix(devices)
    if recheck:
        lines.append(f"forgot {selfcheck.forget()} kept self-check verdicts ({verdicts.path()})")
    lines.append("kernel self-checks against the torch backend:")
    lines += _self_checks(devices)
    return "\n".join(lines)


if __name__ == "__main__":
    print(report())

"""Kernels validate themselves before auto uses them: before auto first hands a kernel backend a
(device, shape class, input dtype, precision), the kernels run what production runs at row
counts derived from their launch plan, against the torch backend on that device, with NaN
probes (selfcheck_compare.py). A kernel that errs beyond the tolerance of its precision
(``testing.SELF_CHECK_TOLERANCE``), drops a NaN, raises, crashes or hangs is not used: auto
falls back to the torch backend and logs the reason in one line.

A kernel backend's check runs in a child process (selfcheck_child.py), so that nothing it does
can reach the caller's process or CUDA context, and its verdict is kept on disk
(verdicts.py), keyed by device, driver, code and request: later runs reuse it without a child;
``mgdl-fast info --recheck`` forgets them. The torch backend's own bf16 check (torch/__init__.py)
runs in process. Verdicts are also kept per process (``results()``; ``mgdl-fast info`` prints
them, metrics.json records those of each grade). ``MGDL_FAST_SKIP_SELF_CHECK=1`` skips checks.
"""

from __future__ import annotations

import json
import os
import threading
from typing import TYPE_CHECKING

import torch

from .._version import __version__
from ..block import BlockShape
from . import verdicts
from .base import Options
from .selfcheck_child import request, run_isolated
from .selfcheck_compare import compare

if TYPE_CHECKING:
    from .base import Backend

SKIP_ENV = "MGDL_FAST_SKIP_SELF_CHECK"
_results: dict[tuple, dict] = {}
_lock = threading.Lock()


def shape_class(shape: BlockShape) -> tuple:
    """What a kernel specialises on: small inputs (coordinates) by their count, inputs as wide
    as the block (features) as one class; width, hidden layers and outputs exactly."""
    inputs = "W" if shape.in_dim == shape.width else shape.in_dim
    return (inputs, shape.width, shape.hidden_layers, shape.out_dim)


def results() -> dict[str, dict]:
    """Every self-check verdict of this process, keyed by a readable description (options
    other than the defaults, and tile overrides, appended)."""
    described, defaults = {}, Options().to_dict()
    for (name, device, c, dtype, options, env), result in _results.items():
        chosen = json.loads(options)
        label = f"{name} {device} D={c[0]} W={c[1]} L={c[2]} C={c[3]} {dtype} "
        label += chosen.pop("precision")
        label += "".join(f" {k}={v}" for k, v in chosen.items() if defaults.get(k) != v)
        label += "".join(f" {k}={v}" for k, v in json.loads(env).items())
        described[label] = result
    return described


def failure_line(check: dict) -> str:
    """The one line a failed verdict is logged as."""
    kept = " (kept; `mgdl-fast info --recheck` checks again)" if "cached" in check else ""
    return f"self-check failed: {check.get('reason') or 'no reason given'}{kept}"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from ..io.environment import cpu_name

    return cpu_name()


def tuning_environment() -> dict[str, str]:
    """The environment variables that change what a kernel compiles (the Triton tile
    overrides, ``$MGDL_FAST_TRITON_*``), as set now."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("MGDL_FAST_TRITON_")}


def description(backend: Backend, shape: BlockShape, device, input_dtype, options) -> dict:
    """What a stored verdict is valid for: change any of it and the kernel is checked again."""
    from ..io.environment import commit

    try:
        import triton

        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {
        "backend": backend.name,
        "device": device_name(device),
        "driver": verdicts.driver_version() if device.type == "cuda" else "none",
        "mgdl_fast": __version__,
        "commit": commit(),
        "sources": verdicts.digest(tuple(backend.source_files())),
        "torch": torch.__version__,
        "triton": triton_version,
        "shape_class": list(shape_class(shape)),
        "input_dtype": str(input_dtype).removeprefix("torch."),
        "environment": tuning_environment(),
        **options.to_dict(),
    }


def validate(
    backend: Backend,
    shape: BlockShape,
    device: torch.device,
    input_dtype: torch.dtype,
    options: Options,
    *,
    isolate: bool = True,
) -> dict | None:
    """The verdict of ``backend`` for this request (kept per process, and on disk when
    ``isolate``: the kernel backends' checks run in a child process); None when skipped."""
    if os.environ.get(SKIP_ENV) == "1":
        return None
    resolved = backend.resolve_options(options, input_dtype)
    key = (
        backend.name,
        str(device),
        shape_class(shape),
        str(input_dtype),
        json.dumps(resolved.to_dict(), sort_keys=True),
        json.dumps(tuning_environment()),
    )
    with _lock:
        if key not in _results:
            _results[key] = _check(backend, shape, device, input_dtype, resolved, isolate)
        return _results[key]


def _check(backend, shape, device, input_dtype, options, isolate: bool) -> dict:
    if not isolate:
        return compare(backend, shape, device, input_dtype, options)
    desc = description(backend, shape, device, input_dtype, options)
    stored = verdicts.load(desc)
    if stored is not None:
        return {**stored, "cached": True}
    verdict = run_isolated(request(backend, shape, device, input_dtype, options))
    verdict.setdefault("precision", options.precision)
    if not verdict.get("transient"):
        verdicts.store(desc, verdict)
    return {**verdict, "cached": False}


def forget() -> int:
    """Forget every verdict, in this process and on disk; returns how many were on disk."""
    with _lock:
        _results.clear()
    return verdicts.clear()

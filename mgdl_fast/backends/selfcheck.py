"""Kernels validate themselves: before auto first hands a kernel backend a (device, shape class,
input dtype, precision), one forward and one training step at a small awkward size run on that
device against the torch backend. A kernel whose error exceeds the tolerance of its precision
(``testing.SELF_CHECK_TOLERANCE``) is not used; auto falls back and logs the measured error.
Results are kept per process (``results()``; ``mgdl-fast info`` prints them, metrics.json
records those of each grade). ``MGDL_FAST_SKIP_SELF_CHECK=1`` skips the check.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

import torch

from ..block import BlockParams, BlockShape
from .base import Options

if TYPE_CHECKING:
    from .base import Backend

SKIP_ENV = "MGDL_FAST_SKIP_SELF_CHECK"
# 300 rows: not a multiple of any tile, several tiles per program on every backend.
CHECK_ROWS = 300
_results: dict[tuple, dict] = {}


def shape_class(shape: BlockShape) -> tuple:
    """What a kernel specialises on: small inputs (coordinates) by their count, inputs as wide
    as the block (features) as one class; width, hidden layers and outputs exactly."""
    inputs = "W" if shape.in_dim == shape.width else shape.in_dim
    return (inputs, shape.width, shape.hidden_layers, shape.out_dim)


def results() -> dict[str, dict]:
    """Every self-check run in this process, keyed by a readable description."""
    return {
        f"{name} {device} D={c[0]} W={c[1]} L={c[2]} C={c[3]} {dtype} {precision}": result
        for (name, device, c, dtype, precision), result in _results.items()
    }


def failure_line(name: str, check: dict) -> str:
    return (
        f"self-check failed: {check['worst']} error {check['error']:.3e} against the torch "
        f"backend exceeds {check['tolerance']:.1e} ({check['precision']})"
    )


def validate(
    backend: Backend,
    shape: BlockShape,
    device: torch.device,
    input_dtype: torch.dtype,
    options: Options,
) -> dict | None:
    """The (cached) self-check of ``backend`` for this request; None when skipped."""
    if os.environ.get(SKIP_ENV) == "1":
        return None
    resolved = backend.resolve_options(options, input_dtype)
    key = (backend.name, str(device), shape_class(shape), str(input_dtype), resolved.precision)
    if key not in _results:
        _results[key] = _run(backend, shape, device, input_dtype, resolved)
    return _results[key]


def _inputs(shape: BlockShape, device: torch.device, input_dtype: torch.dtype):
    gen = torch.Generator().manual_seed(12345)
    n = CHECK_ROWS
    if shape.in_dim == shape.width:
        x = torch.relu(torch.randn(n, shape.in_dim, generator=gen))
    else:
        x = torch.rand(n, shape.in_dim, generator=gen)
    y = torch.rand(n, shape.out_dim, generator=gen)
    params = BlockParams.init(shape, seed=7, device=device)
    return x.to(device, input_dtype), y.to(device), params.flat


def _relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    scale = expected.double().abs().max().clamp_min(1e-30)
    error = ((actual.double() - expected.double()).abs().max() / scale).item()
    return error if error == error else float("inf")


def _run(backend, shape, device, input_dtype, options) -> dict:
    from ..testing import SELF_CHECK_TOLERANCE
    from .torch import TorchBackend

    start = time.perf_counter()
    x, y, flat = _inputs(shape, device, input_dtype)
    kernel = backend.bind(shape, device, input_dtype, CHECK_ROWS, options)
    oracle = TorchBackend().bind(shape, device, input_dtype, CHECK_ROWS, Options("fp32"))
    errors = {}
    outs = [torch.empty(CHECK_ROWS, shape.out_dim, device=device) for _ in range(2)]
    for engine, out in zip((kernel, oracle), outs):
        engine.forward(x, flat, out)
    errors["forward"] = _relative_error(outs[0], outs[1])
    grads = [torch.empty_like(flat) for _ in range(2)]
    losses = [engine.step(x, y, flat, g).clone() for engine, g in zip((kernel, oracle), grads)]
    errors["loss"] = _relative_error(losses[0], losses[1])
    errors["gradient"] = _relative_error(grads[0], grads[1])
    worst = max(errors, key=errors.__getitem__)
    tolerance = SELF_CHECK_TOLERANCE[options.precision]
    return {
        "passed": errors[worst] <= tolerance,
        "precision": options.precision,
        "errors": errors,
        "worst": worst,
        "error": errors[worst],
        "tolerance": tolerance,
        "rows": CHECK_ROWS,
        "seconds": round(time.perf_counter() - start, 3),
    }

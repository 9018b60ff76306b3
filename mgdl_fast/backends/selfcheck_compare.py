"""The comparison a self-check runs: a kernel backend against the fp32 torch backend on the same
device, at row counts that exercise what production runs.

Row counts come from the kernel's launch geometry (``Backend.launch_geometry``: rows per tile
and the programs of a launch that fills the device): ``3 * programs * tile + r`` with an odd
``r < tile`` makes every program loop over at least three tiles (first-tile store then
accumulate, the double-buffered next tile, the pipelined loop) and leaves a ragged last tile;
``4 * programs * tile`` is a multiple of 16 like a large image's row count, the integer
specialisation Triton compiles for it. At each count: the forward (output and features), one
training step (loss and gradient), the backward from the step's own dL/dout, and two Adam
updates. Then NaN probes: a NaN weight must give a NaN loss, a NaN input row a NaN output row.
Every exception becomes a failed verdict with its reason.
"""

from __future__ import annotations

import time
import traceback

import torch

from ..block import BlockParams, BlockShape
from .base import Backend, Options

OPS = ("forward", "features", "loss", "gradient", "backward", "adam")


def check_rows(tile_rows: int, programs: int) -> tuple[int, int]:
    """(multi-tile count with an odd remainder, large-image specialisation count)."""
    remainder = max(1, tile_rows // 2 - 1) | 1
    aligned = -(-4 * programs * tile_rows // 16) * 16
    return 3 * programs * tile_rows + remainder, aligned


def inputs(shape: BlockShape, n: int, device: torch.device, input_dtype: torch.dtype,
           seed: int = 12345, param_seed: int = 7):  # fmt: skip
    """``(x [n, D], y [n, C], flat [P])`` as a grade sees them: coordinates in [0, 1) for a
    small input, ReLU features for one as wide as the block."""
    gen = torch.Generator().manual_seed(seed)
    if shape.in_dim == shape.width:
        x = torch.relu(torch.randn(n, shape.in_dim, generator=gen))
    else:
        x = torch.rand(n, shape.in_dim, generator=gen)
    y = torch.rand(n, shape.out_dim, generator=gen)
    params = BlockParams.init(shape, seed=param_seed, device=device)
    return x.to(device, input_dtype), y.to(device), params.flat


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """max |actual - expected| / max |expected|; inf when either holds NaN."""
    scale = expected.double().abs().max().clamp_min(1e-30)
    error = ((actual.double() - expected.double()).abs().max() / scale).item()
    return error if error == error else float("inf")


def _results(engine, x, y, flat, g_out, g_adam) -> dict[str, torch.Tensor]:
    """Every op's output on ``engine`` (outputs start as NaN: an unwritten element fails).
    Adam is given the same gradient ``g_adam`` on every engine and judged by its update, not
    the parameters after it: an update lost in the parameters' size would still pass."""
    n, shape, device = x.shape[0], engine.shape, x.device
    nan = float("nan")
    out = torch.full((n, shape.out_dim), nan, device=device)
    feats = torch.full((n, shape.width), nan, device=device)
    engine.forward(x, flat, out, feats)
    grad = torch.full_like(flat, nan)
    loss = engine.step(x, y, flat, grad).clone()
    bgrad = torch.full_like(flat, nan)
    engine.backward(x, flat, g_out, bgrad)
    params = flat.clone()
    state = engine.optimizer_state("adam", 1e-3, flat.numel())
    for _ in range(2):
        engine.update(params, g_adam, state)
    return {"forward": out, "features": feats, "loss": loss, "gradient": grad,
            "backward": bgrad, "adam": params - flat}  # fmt: skip


def _nan_probes(engine, x, y, flat) -> list[str]:
    """What fails to propagate NaN: a NaN weight into the loss, a NaN input into its row."""
    failures = []
    nan_flat = flat.clone()
    nan_flat[engine.shape.num_params // 2] = float("nan")
    loss = engine.step(x, y, nan_flat, torch.empty_like(flat))
    if not bool(torch.isnan(loss)):
        failures.append("a NaN weight gave a finite loss")
    nan_x = x.clone()
    nan_x[x.shape[0] // 2, 0] = float("nan")
    out = torch.zeros(x.shape[0], engine.shape.out_dim, device=x.device)
    engine.forward(nan_x, flat, out)
    if not bool(torch.isnan(out[x.shape[0] // 2]).all()):
        failures.append("a NaN input gave a finite output")
    return failures


def _compare_at(kernel, oracle, shape, n, device, input_dtype) -> dict[str, float]:
    x, y, flat = inputs(shape, n, device, input_dtype)
    out = torch.empty(n, shape.out_dim, device=device)
    oracle.forward(x, flat, out)
    g_out = (out - y) / y.numel()
    g_adam = torch.randn(flat.shape, generator=torch.Generator().manual_seed(3)).to(device)
    want = _results(oracle, x, y, flat, g_out, g_adam)
    got = _results(kernel, x, y, flat, g_out, g_adam)
    return {op: relative_error(got[op], want[op]) for op in OPS}


def compare(
    backend: Backend,
    shape: BlockShape,
    device: torch.device,
    input_dtype: torch.dtype,
    options: Options,
) -> dict:
    """The verdict of ``backend`` (options resolved) against the fp32 torch backend."""
    from ..testing import SELF_CHECK_TOLERANCE
    from .torch import TorchBackend

    start = time.perf_counter()
    verdict: dict = {"passed": False, "precision": options.precision, "reason": None}
    try:
        rows = check_rows(*backend.launch_geometry(shape, device, input_dtype, options))
        verdict["rows"] = list(rows)
        kernel = backend.bind(shape, device, input_dtype, max(rows), options)
        oracle = TorchBackend().bind(shape, device, input_dtype, max(rows), Options("fp32"))
        errors: dict[str, float] = {}
        for n in rows:
            for op, err in _compare_at(kernel, oracle, shape, n, device, input_dtype).items():
                errors[op] = max(errors.get(op, 0.0), err)
        x, y, flat = inputs(shape, rows[0], device, input_dtype)
        nan_failures = _nan_probes(kernel, x, y, flat)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    except Exception as exc:  # any failure of an unproven kernel is a verdict, not a crash
        last = traceback.format_exception_only(type(exc), exc)[-1].strip()
        verdict["reason"] = f"raised {last[:300]}"
        verdict["seconds"] = round(time.perf_counter() - start, 3)
        return verdict
    worst = max(errors, key=errors.__getitem__)
    tolerance = SELF_CHECK_TOLERANCE[options.precision]
    verdict.update(
        errors=errors, worst=worst, error=errors[worst], tolerance=tolerance,
        nan_probe="passed" if not nan_failures else "; ".join(nan_failures),
        passed=errors[worst] <= tolerance and not nan_failures,
        seconds=round(time.perf_counter() - start, 3),
    )  # fmt: skip
    if nan_failures:
        verdict["reason"] = "; ".join(nan_failures)
    elif not verdict["passed"]:
        verdict["reason"] = (
            f"{worst} error {errors[worst]:.3e} against the torch backend exceeds "
            f"{tolerance:.1e} ({options.precision})"
        )
    return verdict

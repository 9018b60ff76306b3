"""Test helpers shared by every backend's tests: one tolerance table, NaN poisoning.

Tolerances compare a result with a float64 oracle. For reduced precision (tf32, bf16) use the
flash-attention rule through ``assert_close_to_oracle``: the error of the tested result must be
at most ``factor`` times the error of the reference computed in the same reduced precision, plus
a small floor. Changing a value here needs a stated reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

# (rtol, atol) against a float64 oracle; atol is multiplied by max(1, max|expected|) because
# gradients are long sums whose terms can cancel: their rounding error scales with the size of
# the terms, not of the result.
TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    # Same algorithm in float64: only summation order differs.
    torch.float64: (1e-10, 1e-12),
    # fp32 GEMMs over up to ~1e4 terms: relative error grows ~ sqrt(K) * 6e-8.
    torch.float32: (2e-5, 2e-6),
}


# The kernels' self-check (backends/selfcheck.py): max |kernel - torch| / max |torch| over the
# output, loss and gradient of one step at N = 300, per product precision. fp32 sums in another
# order stay near 1e-6; tf32 and bf16 round every operand (2^-11 and 2^-8 relative), and a
# gradient sums ~300 such products, so a few times the unit roundoff; a wrong kernel is off by
# O(1).
SELF_CHECK_TOLERANCE: dict[str, float] = {"fp32": 1e-4, "tf32": 1e-2, "bf16": 5e-2}


def tolerance(dtype: torch.dtype) -> dict[str, float]:
    rtol, atol = TOLERANCES[dtype]
    return {"rtol": rtol, "atol": atol}


def assert_close(
    actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype | None = None, msg: str = ""
) -> None:
    """``actual`` matches ``expected`` within the table's tolerance for ``dtype`` (default
    ``actual.dtype``); NaNs never match."""
    rtol, atol = TOLERANCES[dtype or actual.dtype]
    expected = expected.double().cpu()
    scale = max(1.0, expected.abs().max().item()) if expected.numel() else 1.0
    torch.testing.assert_close(
        actual.double().cpu(),
        expected,
        equal_nan=False,
        rtol=rtol,
        atol=atol * scale,
        msg=lambda m: f"{msg}\n{m}" if msg else m,
    )


def assert_close_to_oracle(
    actual: torch.Tensor,
    oracle64: torch.Tensor,
    reference_lowp: torch.Tensor,
    *,
    factor: float = 2.0,
    floor: float = 1e-5,
    msg: str = "",
) -> None:
    """Reduced-precision rule: max|actual - oracle| <= factor * max|ref_lowp - oracle| + floor."""
    oracle = oracle64.double().cpu()
    err = (actual.double().cpu() - oracle).abs().max().item()
    ref_err = (reference_lowp.double().cpu() - oracle).abs().max().item()
    bound = factor * ref_err + floor * max(1.0, oracle.abs().max().item())
    assert err == err and err <= bound, (
        f"{msg} error {err:.3e} > bound {bound:.3e} (reference error {ref_err:.3e})"
    )


def poisoned(
    *shape: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """A tensor filled with NaN, to pass as an output buffer: any element a kernel fails to
    write stays NaN and fails the comparison."""
    return torch.full(shape, float("nan"), dtype=dtype, device=device)


@contextlib.contextmanager
def poison_buffers() -> Iterator[None]:
    """Within the block, every buffer an engine allocates at bind time starts as NaN, so a
    kernel that reads an element before writing it fails the comparison (fla's NaN poisoning
    of internal allocations)."""
    from .backends import engine

    previous = engine._poison_buffers
    engine._poison_buffers = True
    try:
        yield
    finally:
        engine._poison_buffers = previous

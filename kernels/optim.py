"""Fused optimizer updates over a grade's flat parameter vector (every tensor ``[P]`` fp32)."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _adam_kernel(
    p_ptr,
    g_ptr,
    m_ptr,
    v_ptr,
    P,
    one_minus_beta1,
    beta2,
    one_minus_beta2,
    step_size_ptr,
    bias_correction2_ptr,
    eps,
    BLOCK: tl.constexpr,
):
    """One bias-corrected Adam update in place, the torch backend's arithmetic in fp32:
    ``m += (1 - b1)(g - m); v = b2 v + (1 - b2) g^2; p -= step_size m / (sqrt(v / bc2) + eps)``
    with ``step_size = lr / (1 - b1^t)`` and ``bc2 = 1 - b2^t`` read from device memory
    (float64 0-dim tensors the host advances on the device), so a CUDA graph replays the
    bias corrections of the current step, not of the step it was captured at."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = i < P
    step_size = tl.load(step_size_ptr).to(tl.float32)
    bias_correction2 = tl.load(bias_correction2_ptr).to(tl.float32)
    g = tl.load(g_ptr + i, mask=mask)
    m = tl.load(m_ptr + i, mask=mask)
    v = tl.load(v_ptr + i, mask=mask)
    m = m + one_minus_beta1 * (g - m)
    v = beta2 * v + one_minus_beta2 * g * g
    denom = tl.sqrt_rn(tl.div_rn(v, bias_correction2)) + eps
    p = tl.load(p_ptr + i, mask=mask) - step_size * tl.div_rn(m, denom)
    tl.store(m_ptr + i, m, mask=mask)
    tl.store(v_ptr + i, v, mask=mask)
    tl.store(p_ptr + i, p, mask=mask)


@triton.jit
def _gd_kernel(p_ptr, g_ptr, P, lr, BLOCK: tl.constexpr):
    """Gradient descent ``p -= lr * g`` in place."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    mask = i < P
    tl.store(
        p_ptr + i, tl.load(p_ptr + i, mask=mask) - lr * tl.load(g_ptr + i, mask=mask), mask=mask
    )

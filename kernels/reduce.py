"""Deterministic reduction of the training kernels' per-program partial gradients."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _reduce_partials_kernel(
    acc_ptr,
    num_rows,
    P,
    acc_stride,
    grad_ptr,
    loss_ptr,
    loss_scale,
    BLOCK: tl.constexpr,
    ROWS: tl.constexpr,
    HAS_LOSS: tl.constexpr,
):
    """``grad [P] = sum over rows of acc [num_rows, acc_stride]`` in a fixed order.

    ``acc_stride`` is a multiple of 32 (kernels/_config.PARTIAL_ALIGN), so each program reads
    ``[ROWS, BLOCK]`` slabs with 16-byte vector loads. With HAS_LOSS, column P of ``acc`` holds
    sums of squared errors and ``loss`` (0-dim) receives their total times ``loss_scale``.
    """
    cols = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    # The padded stride, not P + 1, bounds the reads: a mask that is constant over 4 columns
    # keeps them vector loads (the padding holds whatever; it is never stored).
    cmask = cols < acc_stride
    total = tl.zeros([BLOCK], tl.float32)
    for r0 in range(0, num_rows, ROWS):
        r = r0 + tl.arange(0, ROWS)
        mask = (r < num_rows)[:, None] & cmask[None, :]
        part = tl.load(acc_ptr + r[:, None] * acc_stride + cols[None, :], mask=mask, other=0.0)
        total += tl.sum(part, axis=0)
    tl.store(grad_ptr + cols, total, mask=cols < P)
    if HAS_LOSS:
        tl.store(loss_ptr + cols * 0, total * loss_scale, mask=cols == P)

"""Fused full-batch training step for 0.5 * mean((block(x) - y)^2) in one pass over the data."""

from __future__ import annotations

import triton
import triton.language as tl

from ._backward import _backward
from ._block import _forward, _offset, _output


@triton.jit
def _grade_step_kernel(
    x_ptr,
    y_ptr,
    p_ptr,
    w_ptr,
    acc_ptr,
    loss_ptr,
    N,
    num_tiles,
    num_programs,
    acc_stride,
    grad_scale,
    loss_scale,
    D: tl.constexpr,
    W: tl.constexpr,
    WC: tl.constexpr,
    L: tl.constexpr,
    C: tl.constexpr,
    BM: tl.constexpr,
    DOT: tl.constexpr,
    ATOMIC: tl.constexpr,
):
    """Loss and dL/dparams of one step; activations never leave the chip.

    ``x [N, D]`` fp32 or bf16, ``y [N, C]`` fp32, ``p [P]`` fp32 parameters, ``w [P]`` the same
    in the product dtype. Persistent: program i takes tiles i, i + G, ... (G =
    ``num_programs``) of BM rows and adds their gradients into ``acc`` row i (``[G,
    acc_stride]`` fp32; column P receives the program's sum of squared errors) for a
    deterministic reduction afterwards. With ATOMIC, ``acc`` is the zeroed
    gradient ``[P]`` itself (``acc_stride`` 0) and ``loss_ptr`` a zeroed scalar, both updated by
    atomics. ``grad_scale`` = 1 / (N * C); ``loss_scale`` = 0.5 / (N * C).
    """
    pid = tl.program_id(0)
    acc_ptr += pid.to(tl.int64) * acc_stride
    sq = tl.zeros([BM], tl.float32)
    t = pid
    # A while loop: Triton 3.6's interpreter cannot take a run-time range() bound under
    # NumPy >= 2.4 (it converts a 1-element array to int); a for loop would let Triton
    # software-pipeline the next tile's loads, a trade to time on a GPU.
    while t < num_tiles:
        rows = t.to(tl.int64) * BM + tl.arange(0, BM)
        rmask = rows < N
        hs = _forward(x_ptr, rows, rmask, p_ptr, w_ptr, D, W, WC, L, BM, DOT)
        g_outs = ()
        for c in tl.static_range(C):
            y_c = tl.load(y_ptr + rows * C + c, mask=rmask, other=0.0)
            diff = tl.where(rmask, _output(hs[L], p_ptr, c, D, W, WC, L, C, BM) - y_c, 0.0)
            sq += diff * diff
            g_outs = g_outs + (diff * grad_scale,)
        _backward(
            hs, g_outs, x_ptr, rows, rmask, p_ptr, w_ptr, acc_ptr, t != pid, x_ptr,
            D, W, WC, L, C, BM, DOT, ATOMIC, False,
        )  # fmt: skip
        if not ATOMIC:
            # Orders this tile's adds to the program's partial row before the next tile's.
            tl.debug_barrier()
        t += num_programs
    total = tl.sum(sq, axis=0)
    if ATOMIC:
        tl.atomic_add(loss_ptr, total * loss_scale, sem="relaxed")
    else:
        tl.store(acc_ptr + _offset(L, D, W) + W * C + C, total)

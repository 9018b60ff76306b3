"""Block backward from a given dL/dout, recomputing the forward on chip (for losses that couple
pixels, such as TV or blur, whose gradient is formed outside the block)."""

from __future__ import annotations

import triton
import triton.language as tl

from ._backward import _backward
from ._block import _forward


@triton.jit
def _block_bwd_kernel(
    x_ptr,
    p_ptr,
    w_ptr,
    go_ptr,
    acc_ptr,
    gx_ptr,
    N,
    num_tiles,
    num_programs,
    acc_stride,
    D: tl.constexpr,
    W: tl.constexpr,
    WC: tl.constexpr,
    L: tl.constexpr,
    C: tl.constexpr,
    BM: tl.constexpr,
    DOT: tl.constexpr,
    ATOMIC: tl.constexpr,
    WRITE_GX: tl.constexpr,
):
    """dL/dparams (and with WRITE_GX dL/dx) for ``go = dL/dout [N, C]`` (fp32 or bf16).

    ``x [N, D]`` fp32 or bf16, ``p [P]`` fp32, ``w [P]`` the same in the product dtype,
    ``gx [N, D]`` fp32 or bf16. Persistent like
    ``_grade_step_kernel``: program i adds its tiles' gradients into ``acc`` row i
    (``[G, acc_stride]`` fp32), or with ATOMIC into the zeroed gradient ``[P]`` itself.
    """
    pid = tl.program_id(0)
    acc_ptr += pid.to(tl.int64) * acc_stride
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
            g_c = tl.load(go_ptr + rows * C + c, mask=rmask, other=0.0).to(tl.float32)
            g_outs = g_outs + (g_c,)
        _backward(
            hs, g_outs, x_ptr, rows, rmask, p_ptr, w_ptr, acc_ptr, t != pid, gx_ptr,
            D, W, WC, L, C, BM, DOT, ATOMIC, WRITE_GX,
        )  # fmt: skip
        if not ATOMIC:
            # Orders this tile's adds to the program's partial row before the next tile's.
            tl.debug_barrier()
        t += num_programs

"""Block backward from a given dL/dout, recomputing the forward on chip (for losses that couple
pixels, such as TV or blur, whose gradient is formed outside the block)."""

from __future__ import annotations

import triton
import triton.language as tl

from ._backward import _backward, _write_grads, _zeros
from ._block import _tile, _vectors, _weights


@triton.jit
def _block_bwd_kernel(
    x_ptr,
    p_ptr,
    w_ptr,
    go_ptr,
    acc_ptr,
    gs_ptr,
    hs_ptr,
    gx_ptr,
    N,
    num_tiles,
    num_programs,
    acc_stride,
    slot,
    D: tl.constexpr,
    W: tl.constexpr,
    WC: tl.constexpr,
    L: tl.constexpr,
    C: tl.constexpr,
    BM: tl.constexpr,
    DOT: tl.constexpr,
    RESIDENT: tl.constexpr,
    KEEP: tl.constexpr,
    STAGES: tl.constexpr,
    ATOMIC: tl.constexpr,
    WRITE_GX: tl.constexpr,
):
    """dL/dparams (and with WRITE_GX dL/dx ``gx [N, D]`` fp32) for ``go = dL/dout [N, C]`` fp32.

    ``x [N, D]`` fp32 or bf16, ``p [P]`` fp32, ``w`` the W x W weights in product precision
    (kernels/_block.py); scratch layers leave g_l and h_l in ``gs`` / ``hs`` (slots of ``slot``
    elements, kernels/_backward.py). Persistent like ``_grade_step_kernel``: program i
    accumulates its tiles' gradients on chip and writes them once into ``acc`` row i
    (``[G, acc_stride]`` fp32), or with ATOMIC adds them to the zeroed gradient ``[P]``.
    """
    pid = tl.program_id(0)
    acc_ptr += pid.to(tl.int64) * acc_stride
    vs = _vectors(p_ptr, D, W, WC, L, C)
    ws = _weights(w_ptr, vs, D, W, WC, L, C, DOT, RESIDENT, True)
    dws, gvs, gbo = _zeros(D, W, WC, L, C, KEEP)
    for t in tl.range(pid, num_tiles, num_programs, num_stages=STAGES):
        row0, r, rmask, vs, hs = _tile(
            t, x_ptr, p_ptr, w_ptr, ws, vs, N, D, W, WC, L, C, BM, DOT, RESIDENT, True
        )
        g_outs = ()
        for c in tl.static_range(C):
            g_outs = g_outs + (tl.load(go_ptr + row0 * C + r * C + c, mask=rmask, other=0.0),)
        dws, gvs, gbo = _backward(
            hs, g_outs, ws, vs, dws, gvs, gbo, w_ptr, gs_ptr, hs_ptr, slot, gx_ptr, row0,
            rmask,
            D, W, WC, L, C, BM, DOT, RESIDENT, KEEP, WRITE_GX,
        )  # fmt: skip
    _write_grads(acc_ptr, dws, gvs, gbo, D, W, WC, L, C, KEEP, ATOMIC)

"""Block forward: inputs through every layer to the output, optionally keeping the last hidden
layer (the next grade's cached features)."""

from __future__ import annotations

import triton
import triton.language as tl

from ._block import _cols, _forward, _output


@triton.jit
def _block_fwd_kernel(
    x_ptr,
    p_ptr,
    w_ptr,
    out_ptr,
    feat_ptr,
    N,
    D: tl.constexpr,
    W: tl.constexpr,
    WC: tl.constexpr,
    L: tl.constexpr,
    C: tl.constexpr,
    BM: tl.constexpr,
    DOT: tl.constexpr,
    WRITE_FEATURES: tl.constexpr,
):
    """``out [N, C]`` (fp32) of ``x [N, D]`` (fp32 or bf16) through the block at ``p [P]`` (fp32;
    ``w [P]`` the same in the product dtype), one tile of BM rows per program; with
    WRITE_FEATURES also ``feat [N, W]`` = h_L (fp32 or bf16, rounded to nearest on store)."""
    rows = tl.program_id(0).to(tl.int64) * BM + tl.arange(0, BM)
    rmask = rows < N
    hs = _forward(x_ptr, rows, rmask, p_ptr, w_ptr, D, W, WC, L, BM, DOT)
    for c in tl.static_range(C):
        out_c = _output(hs[L], p_ptr, c, D, W, WC, L, C, BM)
        tl.store(out_ptr + rows * C + c, out_c, mask=rmask)
    if WRITE_FEATURES:
        for j in tl.static_range((W + WC - 1) // WC):
            k = _cols(j, WC)
            mask = rmask[:, None] & (k < W)[None, :]
            tl.store(feat_ptr + rows[:, None] * W + k[None, :], hs[L][j], mask=mask)

"""Block forward: inputs through every layer to the output, optionally keeping the last hidden
layer (the next grade's cached features). Persistent: each program loads the weights once."""

from __future__ import annotations

import triton
import triton.language as tl

from ._block import _cols, _offset, _output, _round_bf16, _tile, _vectors, _weights


@triton.jit
def _block_fwd_kernel(
    x_ptr,
    p_ptr,
    w_ptr,
    out_ptr,
    feat_ptr,
    N,
    num_tiles,
    num_programs,
    D: tl.constexpr,
    W: tl.constexpr,
    WC: tl.constexpr,
    L: tl.constexpr,
    C: tl.constexpr,
    BM: tl.constexpr,
    DOT: tl.constexpr,
    RESIDENT: tl.constexpr,
    STAGES: tl.constexpr,
    WRITE_FEATURES: tl.constexpr,
):
    """``out [N, C]`` fp32 of ``x [N, D]`` (fp32 or bf16) through the block at ``p [P]`` fp32
    (``w [P]`` the same in the product dtype); with WRITE_FEATURES also ``feat [N, W]`` = h_L
    (fp32 or bf16, rounded to nearest). Program i takes tiles i, i + G, ... of BM rows."""
    pid = tl.program_id(0)
    vs = _vectors(p_ptr, D, W, WC, L, C)
    ws = _weights(w_ptr, vs, D, W, WC, L, C, DOT, RESIDENT, False)
    bos = ()
    for c in tl.static_range(C):
        bos = bos + (tl.load(p_ptr + _offset(L, D, W) + W * C + c),)
    for t in tl.range(pid, num_tiles, num_programs, num_stages=STAGES):
        row0, r, rmask, vs, hs = _tile(
            t, x_ptr, p_ptr, w_ptr, ws, vs, N, D, W, WC, L, C, BM, DOT, RESIDENT, False
        )
        for c in tl.static_range(C):
            out_c = _output(hs[L], vs, bos[c], c, W, WC, L)
            tl.store(out_ptr + row0 * C + r * C + c, out_c, mask=rmask)
        if WRITE_FEATURES:
            for k in tl.static_range((W + WC - 1) // WC):
                f = _cols(k, WC)
                h = hs[L][k]
                if feat_ptr.dtype.element_ty == tl.bfloat16:
                    # Exactly representable, so the store's conversion cannot round again.
                    h = _round_bf16(h)
                mask = (f < W)[:, None] & rmask[None, :]
                ptrs = feat_ptr + row0 * W + r[None, :] * W + f[:, None]
                tl.store(ptrs, h.to(feat_ptr.dtype.element_ty), mask=mask)

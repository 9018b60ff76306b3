"""Tile math shared by the training kernels: one tile's backward through a ReLU block, with
its parameter gradients added to fp32 sums as soon as each is formed (see kernels/_block.py
for the layouts and chunking)."""

from __future__ import annotations

import triton
import triton.language as tl

from ._block import _cols, _mm, _offset, _vec, _wblock


@triton.jit
def _accum(ptr, val, mask, keep, ATOMIC: tl.constexpr):
    """Add a tile's gradient ``val`` into fp32 sums at ``ptr``.

    ATOMIC: ``ptr`` is in one vector shared by every program (sum order varies run to run).
    Otherwise it is in this program's own partial row, overwritten on the program's first tile
    (``keep`` False, so the row needs no zeroing) and added to afterwards; one element gets one
    add per tile and the kernels put a barrier between tiles, so the order is fixed. Adds are
    fire-and-forget atomics rather than load + store: no registers wait for the old value.
    """
    if ATOMIC or keep:
        tl.atomic_add(ptr, val, mask=mask, sem="relaxed")
    else:
        tl.store(ptr, val, mask=mask)


@triton.jit
def _backward(
    hs,
    g_outs,
    x_ptr,
    rows,
    rmask,
    p_ptr,
    w_ptr,
    acc_ptr,
    keep,
    gx_ptr,
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
    """Backward of one tile from ``g_outs``: C tensors ``[BM]`` of dL/dout, 0 on masked rows.

    ``hs`` are the tile's activations from ``_forward``. Adds the tile's dL/dparams into
    ``acc_ptr`` (flat layout, see ``_accum``) block by block, so only one ``[WC, WC]`` weight
    gradient is live at a time; with WRITE_GX writes dL/dx into ``gx_ptr [N, D]``.
    """
    NC: tl.constexpr = (W + WC - 1) // WC
    off = _offset(L, D, W)
    g = ()
    for j in tl.static_range(NC):
        k = _cols(j, WC)
        h = hs[L][j].to(tl.float32)
        g_j = tl.zeros([BM, WC], tl.float32)
        for c in tl.static_range(C):
            dw = tl.sum(h * g_outs[c][:, None], axis=0)
            _accum(acc_ptr + off + k * C + c, dw, k < W, keep, ATOMIC)
            g_j += g_outs[c][:, None] * tl.load(p_ptr + off + k * C + c, mask=k < W, other=0.0)
        g = g + (g_j,)
    for c in tl.static_range(C):
        _accum(acc_ptr + off + W * C + c, tl.sum(g_outs[c], axis=0), None, keep, ATOMIC)
    for layer in tl.static_range(L - 1, -1, -1):
        off = _offset(layer, D, W)
        masked = ()
        for j in tl.static_range(NC):
            # ReLU backward: h = 0 exactly where the pre-activation was <= 0.
            g_j = tl.where(hs[layer + 1][j] > 0, g[j], 0.0)
            # b_l sits just before the next layer's weight.
            b = acc_ptr + _offset(layer + 1, D, W) - W + _cols(j, WC)
            _accum(b, tl.sum(g_j, axis=0), _cols(j, WC) < W, keep, ATOMIC)
            masked = masked + (g_j,)
        g = masked
        if layer > 0 or D == W:
            for kc in tl.static_range(NC):
                r = _cols(kc, WC)
                for j in tl.static_range(NC):
                    c = _cols(j, WC)
                    dw = _mm(tl.trans(hs[layer][kc]), g[j], tl.zeros([WC, WC], tl.float32), DOT)
                    mask = (r < W)[:, None] & (c < W)[None, :]
                    _accum(acc_ptr + off + r[:, None] * W + c[None, :], dw, mask, keep, ATOMIC)
            if layer > 0 or WRITE_GX:
                g = _dense_t(g, w_ptr, off, W, WC, BM, DOT)
        else:
            for d in tl.static_range(D):
                xd = tl.load(x_ptr + rows * D + d, mask=rmask, other=0.0).to(tl.float32)
                gx_d = tl.zeros([BM], tl.float32)
                for j in tl.static_range(NC):
                    c = _cols(j, WC)
                    _accum(acc_ptr + d * W + c, tl.sum(xd[:, None] * g[j], 0), c < W, keep, ATOMIC)
                    if WRITE_GX:
                        gx_d += tl.sum(g[j] * _vec(p_ptr, d * W, j, W, WC)[None, :], axis=1)
                if WRITE_GX:
                    tl.store(gx_ptr + rows * D + d, gx_d, mask=rmask)
    if WRITE_GX and D == W:
        for j in tl.static_range(NC):
            c = _cols(j, WC)
            mask = rmask[:, None] & (c < W)[None, :]
            tl.store(gx_ptr + rows[:, None] * W + c[None, :], g[j], mask=mask)


@triton.jit
def _dense_t(g, w_ptr, off, W: tl.constexpr, WC: tl.constexpr, BM: tl.constexpr,
             DOT: tl.constexpr):  # fmt: skip
    """``g @ W_l^T`` for the W -> W weight at ``off``; tuples of ``[BM, WC]`` chunks."""
    out = ()
    for k in tl.static_range((W + WC - 1) // WC):
        a = tl.zeros([BM, WC], tl.float32)
        for j in tl.static_range((W + WC - 1) // WC):
            a = _mm(g[j], tl.trans(_wblock(w_ptr, off, k, j, W, WC)), a, DOT)
        out = out + (a,)
    return out

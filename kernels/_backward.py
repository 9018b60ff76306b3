"""Tile math shared by the training kernels: one tile's backward through the block, its
gradients added to accumulators a program keeps over all its tiles (see kernels/_block.py for
the transposed layout and the blocks).

Accumulators (flat tuples, carried through the tile loop):
- ``dws``: the weight-gradient blocks ``[WC, WC]`` fp32 of the last KEEP W x W layers (layer by
  layer, ``k * NC + j``), in registers. The other W x W layers ("scratch layers", when their
  gradients do not fit in registers) write each tile's g_l and input h_l to scratch memory
  for kernels/weight_grad.py, which sums h_l^T g_l as a GEMM: no per-tile global reduction.
- ``gvs``: the per-feature gradients, laid out as ``_vectors``: db_l, dW_o's columns, and for
  D <= 3 the input layer's rows, ``[WC]`` chunks; ``gbo``: the C output-bias gradients.
"""

from __future__ import annotations

import triton
import triton.language as tl

from ._block import _act, _block, _cols, _mm, _offset


@triton.jit
def _weight_grads(h, g16, dws, gs_ptr, hs_ptr, slot, row0, rmask, layer: tl.constexpr,
                  D: tl.constexpr, W: tl.constexpr, WC: tl.constexpr, L: tl.constexpr,
                  BM: tl.constexpr, DOT: tl.constexpr, KEEP: tl.constexpr):  # fmt: skip
    """``dW_kj += h_k @ g_j^T`` for W x W layer ``layer``: the kept blocks (returned, for the
    layer's place in ``dws``); for a scratch layer the tile's g_l goes to slot
    ``layer - first W x W layer`` of ``gs [*, N, W]`` and (layer > 0; layer 0 reads x) its
    input h_l to slot ``layer - 1`` of ``hs [*, N, W]``, each slot ``slot`` elements."""
    NC: tl.constexpr = (W + WC - 1) // WC
    blocks = ()
    if layer >= L - KEEP:
        for i in tl.static_range(NC * NC):
            acc = dws[(layer - (L - KEEP)) * NC * NC + i]
            blocks = blocks + (_mm(h[i // NC], tl.trans(g16[i % NC]), acc, DOT),)
    else:
        r = tl.arange(0, BM)
        for j in tl.static_range(NC):
            f = _cols(j, WC)
            mask = (f < W)[:, None] & rmask[None, :]
            offs = row0 * W + r[None, :] * W + f[:, None]
            gslot = tl.cast(slot, tl.int64) * (layer - (0 if D == W else 1))
            tl.store(gs_ptr + gslot + offs, g16[j].to(gs_ptr.dtype.element_ty), mask=mask)
            if layer > 0:
                hslot = tl.cast(slot, tl.int64) * (layer - 1)
                tl.store(hs_ptr + hslot + offs, h[j].to(hs_ptr.dtype.element_ty), mask=mask)
    return blocks


@triton.jit
def _backward(hs, g_outs, ws, vs, dws, gvs, gbo, w_ptr, gs_ptr, hs_ptr, slot, gx_ptr, row0,
              rmask, D: tl.constexpr, W: tl.constexpr, WC: tl.constexpr, L: tl.constexpr,
              C: tl.constexpr, BM: tl.constexpr, DOT: tl.constexpr, RESIDENT: tl.constexpr,
              KEEP: tl.constexpr, WRITE_GX: tl.constexpr):  # fmt: skip
    """Backward of one tile from ``g_outs``: C tensors ``[BM]`` of dL/dout, 0 on masked rows.

    ``hs`` are the tile's activations (``_forward``). Returns the updated ``(dws, gvs, gbo)``;
    with WRITE_GX writes dL/dx into ``gx_ptr [N, D]`` fp32.
    """
    NC: tl.constexpr = (W + WC - 1) // WC
    h = hs[L]
    nbo = ()
    dwo = ()
    for c in tl.static_range(C):
        nbo = nbo + (gbo[c] + tl.sum(g_outs[c], axis=0),)
        for j in tl.static_range(NC):
            dwo = dwo + (gvs[(L + c) * NC + j] + tl.sum(h[j] * g_outs[c][None, :], axis=1),)
    g = ()
    for j in tl.static_range(NC):
        gj = tl.zeros([WC, BM], tl.float32)
        for c in tl.static_range(C):
            gj += vs[(L + c) * NC + j][:, None] * g_outs[c][None, :]
        # ReLU backward as torch's threshold_backward: zero where h <= 0 (h = 0 exactly where
        # the pre-activation was <= 0); a NaN activation passes its gradient on.
        g = g + (tl.where(h[j] <= 0, 0.0, gj),)
    dbs = ()
    dwin = ()
    ndws = ()
    for layer in tl.static_range(L - 1, -1, -1):
        db = ()
        g16 = ()
        for j in tl.static_range(NC):
            db = db + (gvs[layer * NC + j] + tl.sum(g[j], axis=1),)
            g16 = g16 + (_act(g[j], DOT),)
        dbs = db + dbs
        if layer > 0 or D == W:
            blocks = _weight_grads(
                hs[layer], g16, dws, gs_ptr, hs_ptr, slot, row0, rmask, layer,
                D, W, WC, L, BM, DOT, KEEP,
            )  # fmt: skip
            ndws = blocks + ndws
            if layer > 0 or WRITE_GX:
                gp = ()
                for k in tl.static_range(NC):
                    a = tl.zeros([WC, BM], tl.float32)
                    for j in tl.static_range(NC):
                        b = _block(ws, w_ptr, layer, k, j, D, W, WC, DOT, RESIDENT)
                        a = _mm(b, g16[j], a, DOT)
                    if layer > 0:
                        a = tl.where(hs[layer][k] <= 0, 0.0, a)
                    gp = gp + (a,)
                g = gp
        else:
            for d in tl.static_range(D):
                gx = tl.zeros([BM], tl.float32)
                for j in tl.static_range(NC):
                    row = gvs[(L + C + d) * NC + j]
                    dwin = dwin + (row + tl.sum(g[j] * hs[0][d][None, :], axis=1),)
                    gx += tl.sum(g[j] * vs[(L + C + d) * NC + j][:, None], axis=0)
                if WRITE_GX:
                    tl.store(gx_ptr + row0 * D + tl.arange(0, BM) * D + d, gx, mask=rmask)
    if WRITE_GX and D == W:
        for k in tl.static_range(NC):
            c = _cols(k, WC)
            mask = (c < W)[:, None] & rmask[None, :]
            ptrs = gx_ptr + row0 * W + tl.arange(0, BM)[None, :] * W + c[:, None]
            tl.store(ptrs, g[k], mask=mask)
    return ndws, dbs + dwo + dwin, nbo


@triton.jit
def _zeros(D: tl.constexpr, W: tl.constexpr, WC: tl.constexpr, L: tl.constexpr,
           C: tl.constexpr, KEEP: tl.constexpr):  # fmt: skip
    """Fresh accumulators ``(dws, gvs, gbo)``."""
    NC: tl.constexpr = (W + WC - 1) // WC
    dws = ()
    for _ in tl.static_range(KEEP * NC * NC):
        dws = dws + (tl.zeros([WC, WC], tl.float32),)
    gvs = ()
    for _ in tl.static_range((L + C + (0 if D == W else D)) * NC):
        gvs = gvs + (tl.zeros([WC], tl.float32),)
    gbo = ()
    for _ in tl.static_range(C):
        gbo = gbo + (tl.sum(tl.zeros([WC], tl.float32), axis=0),)
    return dws, gvs, gbo


@triton.jit
def _put(ptr, val, mask, ATOMIC: tl.constexpr):
    """Write a program's gradient: into its own partial row, or added to the shared one."""
    if ATOMIC:
        tl.atomic_add(ptr, val, mask=mask, sem="relaxed")
    else:
        tl.store(ptr, val, mask=mask)


@triton.jit
def _vec_offset(q: tl.constexpr, D: tl.constexpr, W: tl.constexpr, WC: tl.constexpr,
                L: tl.constexpr, C: tl.constexpr):  # fmt: skip
    """Flat offset of the q-th contiguous per-feature gradient chunk: the bias chunks, W_o's
    chunks when C = 1, then the input layer's row chunks."""
    NC: tl.constexpr = (W + WC - 1) // WC
    if q < L * NC:
        off = _offset(q // NC + 1, D, W) - W + q % NC * WC
    elif C == 1 and q < (L + 1) * NC:
        off = _offset(L, D, W) + q % NC * WC
    else:
        off = (q // NC - L - (C == 1)) * W + q % NC * WC
    return off


@triton.jit
def _write_vectors(acc_ptr, gvs, D: tl.constexpr, W: tl.constexpr, WC: tl.constexpr,
                   L: tl.constexpr, C: tl.constexpr, ATOMIC: tl.constexpr):  # fmt: skip
    """The contiguous per-feature gradients, four chunks per ``[4, WC]`` write: a lone [WC]
    vector would get one element per thread, these get several (vector stores)."""
    NC: tl.constexpr = (W + WC - 1) // WC
    COUNT: tl.constexpr = (L + (C == 1) + (0 if D == W else D)) * NC
    # gvs holds C column chunks of W_o before the input rows; C > 1 columns are strided.
    SHIFT: tl.constexpr = C * NC if C > 1 else 0
    u = tl.arange(0, 4)[:, None]
    f = tl.arange(0, WC)[None, :]
    for g in tl.static_range((COUNT + 3) // 4):
        block = tl.zeros([4, WC], tl.float32)
        offs = tl.zeros([4, 1], tl.int32)
        limit = tl.zeros([4, 1], tl.int32)
        for i in tl.static_range(4):
            if 4 * g + i < COUNT:
                v = gvs[4 * g + i + (4 * g + i >= L * NC) * SHIFT]
                block = tl.where(u == i, v[None, :], block)
                offs = tl.where(u == i, _vec_offset(4 * g + i, D, W, WC, L, C), offs)
                limit = tl.where(u == i, W - (4 * g + i) % NC * WC, limit)
        _put(acc_ptr + offs + f, block, f < limit, ATOMIC)


@triton.jit
def _write_grads(acc_ptr, dws, gvs, gbo, D: tl.constexpr, W: tl.constexpr, WC: tl.constexpr,
                 L: tl.constexpr, C: tl.constexpr, KEEP: tl.constexpr,
                 ATOMIC: tl.constexpr):  # fmt: skip
    """A program's accumulated gradients into ``acc_ptr`` (flat parameter layout)."""
    NC: tl.constexpr = (W + WC - 1) // WC
    for q in tl.static_range(KEEP * NC * NC):
        r = _cols(q % (NC * NC) // NC, WC)
        c = _cols(q % NC, WC)
        ptrs = acc_ptr + _offset(L - KEEP + q // (NC * NC), D, W) + r[:, None] * W + c[None, :]
        _put(ptrs, dws[q], (r < W)[:, None] & (c < W)[None, :], ATOMIC)
    _write_vectors(acc_ptr, gvs, D, W, WC, L, C, ATOMIC)
    for o in tl.static_range(C):
        if C > 1:
            for j in tl.static_range(NC):
                c = _cols(j, WC)
                gw = gvs[(L + o) * NC + j]
                _put(acc_ptr + _offset(L, D, W) + c * C + o, gw, c < W, ATOMIC)
        _put(acc_ptr + _offset(L, D, W) + W * C + o, gbo[o], None, ATOMIC)

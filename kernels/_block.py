"""Tile math shared by the block kernels: one tile of rows forward through a ReLU block, on chip.

Flat parameter layout (mgdl_fast/block.py): hidden layer l (0-based) is W_l [in, W] then b_l [W]
(in = D for l = 0, else W), then the output layer W_o [W, C], b_o [C]; gradients use the same
layout. ``p_ptr`` is that fp32 vector. ``w_ptr`` holds it in product precision (a bf16 copy for
DOT "bf16", rounded to tf32 for "tf32", else fp32), read for the W x W weights only; for
streamed weights (RESIDENT False) it is a TMA descriptor of that vector as ``[P // W, W]``.

Activations are held transposed: a hidden layer of a BM-row tile is a tuple of NC = cdiv(W, WC)
chunks ``[WC, BM]`` (features x rows). A W x W weight is read in ``[WC, WC]`` blocks (k, j) of
its ``[in, out]`` storage and every product has a feature chunk as M and the rows as N:
forward ``a_j = sum_k B_kj^T @ h_k``, input gradient ``g_k = sum_j B_kj @ g_j``, weight
gradient ``dW_kj = h_k @ g_j^T``. Per-feature vectors (biases, the output weights, the 1-3 rows
of an input layer) are ``[WC]`` chunks along M: 2 registers per thread each. Features past W
are masked to 0: a padded unit is relu(0) = 0 and adds nothing. The C <= 4 output layer is
CUDA-core reductions; a D <= 3 input layer is FMAs in the forward kernel and one K = 16
product of split operands in the training kernels (``_input_weights``; a tl.dot with K < 16
does not compile for the GPU).

DOT picks the product precision (kernels/_config.py): "bf16" keeps product operands in bf16,
"bf16emu" rounds them to bf16 values in fp32 (the interpreter), "tf32" rounds fp32 operands to
tf32 explicitly (to nearest, ties away) so the tensor cores' truncation never applies, "ieee"
is fp32. Every product accumulates in fp32; the last hidden layer stays fp32 (it feeds only
CUDA-core work and the cached features).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _offset(layer: tl.constexpr, D: tl.constexpr, W: tl.constexpr):
    """Offset of layer ``layer``'s weight in the flat vector (layer L is the output layer)."""
    return (layer > 0) * (D * W + W + (layer - 1) * (W * W + W))


@triton.jit
def _round_bf16(x):
    """fp32 ``x`` rounded to the nearest bf16 (ties to even), kept in fp32: the GPU's
    cvt.rn.bf16.f32, which the interpreter's cast replaces by truncation."""
    u = x.to(tl.uint32, bitcast=True)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.to(tl.float32, bitcast=True)


@triton.jit
def _round_tf32(x):
    """fp32 ``x`` rounded to tf32 (10 mantissa bits, to nearest, ties away from zero), as
    cvt.rna.tf32.f32 does; NaN and infinities stay what they are."""
    u = x.to(tl.uint32, bitcast=True)
    return ((u + 0x1000) & 0xFFFFE000).to(tl.float32, bitcast=True)


@triton.jit
def _act(h, DOT: tl.constexpr):
    """A product operand as the products read it: bf16, bf16 or tf32 values in fp32, or fp32."""
    if DOT == "bf16":
        out = h.to(tl.bfloat16)
    elif DOT == "bf16emu":
        out = _round_bf16(h.to(tl.float32))
    elif DOT == "tf32":
        out = _round_tf32(h.to(tl.float32))
    else:
        out = h.to(tl.float32)
    return out


@triton.jit
def _mm(a, b, acc, DOT: tl.constexpr):
    """``acc + a @ b`` in fp32 for operands already in product precision (``_act``)."""
    if DOT == "bf16":
        c = tl.dot(a, b, acc)
    elif DOT == "tf32":
        c = tl.dot(a, b, acc, input_precision="tf32")
    else:
        c = tl.dot(a, b, acc, input_precision="ieee")
    return c


@triton.jit
def _relu(a):
    """ReLU that keeps NaN (PTX max.NaN.f32): a diverged grade must not report a finite loss."""
    return tl.maximum(a, 0.0, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _cols(j: tl.constexpr, WC: tl.constexpr):
    """Feature indices ``[WC]`` of chunk j."""
    return j * WC + tl.arange(0, WC)


@triton.jit
def _vec(p_ptr, off, j: tl.constexpr, W: tl.constexpr, WC: tl.constexpr, stride: tl.constexpr):
    """Chunk j ``[WC]`` fp32 of W values at ``p_ptr + off + f * stride``, 0 past W."""
    c = _cols(j, WC)
    return tl.load(p_ptr + off + c * stride, mask=c < W, other=0.0)


@triton.jit
def _wblock(w_ptr, off, k: tl.constexpr, j: tl.constexpr, W: tl.constexpr, WC: tl.constexpr,
            DOT: tl.constexpr):  # fmt: skip
    """Block (k, j) ``[WC in, WC out]`` of the W x W weight at ``w_ptr + off``, 0 past W.

    The host hands ``w`` over in product precision ("bf16": a bf16 copy; "tf32": rounded to
    tf32), so the block is a plain load that stays in shared memory: a weight computed in
    registers would become a register operand, 64 registers per thread for 128 x 128 fp32.
    Only the interpreter's "bf16emu" rounds here."""
    r = _cols(k, WC)
    c = _cols(j, WC)
    ptrs = w_ptr + off + r[:, None] * W + c[None, :]
    if W % WC == 0:
        w = tl.load(ptrs)
    else:
        w = tl.load(ptrs, mask=(r < W)[:, None] & (c < W)[None, :], other=0.0)
    if DOT == "bf16emu":
        w = _round_bf16(w)
    return w


@triton.jit
def _split(v, DOT: tl.constexpr):
    """``(hi, lo)`` fp32 with ``hi + lo`` = v to about 16 (bf16) or 21 (tf32) bits, each exact
    in product precision (``lo`` = 0 for fp32 products)."""
    if DOT == "ieee":
        hi = v
        lo = v * 0.0
    elif DOT == "tf32":
        hi = _round_tf32(v)
        lo = _round_tf32(v - hi)
    else:
        hi = _round_bf16(v)
        lo = _round_bf16(v - hi)
    return hi, lo


@triton.jit
def _input_weights(vs, D: tl.constexpr, W: tl.constexpr, WC: tl.constexpr, L: tl.constexpr,
                   C: tl.constexpr, DOT: tl.constexpr):  # fmt: skip
    """The D <= 3 input layer as NC blocks ``[WC, 16]`` (product precision): columns 3d .. 3d+2
    hold (w_hi, w_lo, w_hi) of input d, matching ``_input_tile``'s rows (x_hi, x_hi, x_lo), so
    one K = 16 product gives ``sum_d x_d w_d`` to about fp32 accuracy: coordinates rounded to
    bf16 alone would merge neighbouring pixels of a 1024^2 grid."""
    NC: tl.constexpr = (W + WC - 1) // WC
    kk = tl.arange(0, 16)
    blocks = ()
    for j in tl.static_range(NC):
        wk = tl.zeros([WC, 16], tl.float32)
        for d in tl.static_range(D):
            hi, lo = _split(vs[(L + C + d) * NC + j], DOT)
            wk = tl.where(kk[None, :] == 3 * d, hi[:, None], wk)
            wk = tl.where(kk[None, :] == 3 * d + 1, lo[:, None], wk)
            wk = tl.where(kk[None, :] == 3 * d + 2, hi[:, None], wk)
        blocks = blocks + (_act(wk, DOT),)
    return blocks


@triton.jit
def _input_tile(xs, D: tl.constexpr, BM: tl.constexpr, DOT: tl.constexpr):
    """A tile's D <= 3 input columns as the ``[16, BM]`` operand of ``_input_weights``."""
    kk = tl.arange(0, 16)
    xk = tl.zeros([16, BM], tl.float32)
    for d in tl.static_range(D):
        hi, lo = _split(xs[d], DOT)
        xk = tl.where(kk[:, None] == 3 * d, hi[None, :], xk)
        xk = tl.where(kk[:, None] == 3 * d + 1, hi[None, :], xk)
        xk = tl.where(kk[:, None] == 3 * d + 2, lo[None, :], xk)
    return _act(xk, DOT)


@triton.jit
def _weights(w_ptr, vs, D: tl.constexpr, W: tl.constexpr, WC: tl.constexpr, L: tl.constexpr,
             C: tl.constexpr, DOT: tl.constexpr, RESIDENT: tl.constexpr,
             INPUT_MMA: tl.constexpr):  # fmt: skip
    """``(input-layer blocks, W x W blocks)``, loaded before the tile loop so they stay in
    shared memory for the launch: ``_input_weights`` (D <= 3 and INPUT_MMA), and with RESIDENT
    every W x W weight block, flat layer by layer (from the first W x W one), ``k * NC + j``."""
    NC: tl.constexpr = (W + WC - 1) // WC
    win = ()
    if D != W and INPUT_MMA:
        win = _input_weights(vs, D, W, WC, L, C, DOT)
    ws = ()
    if RESIDENT:
        for layer in tl.static_range(0 if D == W else 1, L):
            for i in tl.static_range(NC * NC):
                ws = ws + (_wblock(w_ptr, _offset(layer, D, W), i // NC, i % NC, W, WC, DOT),)
    return win, ws


@triton.jit
def _block(ws, w_ptr, layer: tl.constexpr, k: tl.constexpr, j: tl.constexpr, D: tl.constexpr,
           W: tl.constexpr, WC: tl.constexpr, DOT: tl.constexpr,
           RESIDENT: tl.constexpr):  # fmt: skip
    """Block (k, j) of layer ``layer``'s weight: resident (``_weights``), or streamed now."""
    NC: tl.constexpr = (W + WC - 1) // WC
    if RESIDENT:
        b = ws[1][(layer - (0 if D == W else 1)) * NC * NC + k * NC + j]
    else:
        # A tensor-memory-accelerator copy straight into shared memory: a load through
        # registers would hold a 128 x 128 block (32 registers per thread) per use.
        b = w_ptr.load([_offset(layer, D, W) // W + k * WC, j * WC])
        if DOT == "bf16emu":
            b = _round_bf16(b)
    return b


@triton.jit
def _vectors(p_ptr, D: tl.constexpr, W: tl.constexpr, WC: tl.constexpr, L: tl.constexpr,
             C: tl.constexpr):  # fmt: skip
    """The per-feature parameters, flat tuple of ``[WC]`` chunks: b_0 .. b_{L-1}, then the
    output weight's C columns, then (D <= 3) the input layer's D rows."""
    NC: tl.constexpr = (W + WC - 1) // WC
    vs = ()
    for layer in tl.static_range(L):
        for j in tl.static_range(NC):
            vs = vs + (_vec(p_ptr, _offset(layer + 1, D, W) - W, j, W, WC, 1),)
    for c in tl.static_range(C):
        for j in tl.static_range(NC):
            vs = vs + (_vec(p_ptr, _offset(L, D, W) + c, j, W, WC, C),)
    if D != W:
        for d in tl.static_range(D):
            for j in tl.static_range(NC):
                vs = vs + (_vec(p_ptr, d * W, j, W, WC, 1),)
    return vs


@triton.jit
def _inputs(x_ptr, row0, rmask, D: tl.constexpr, W: tl.constexpr, WC: tl.constexpr,
            BM: tl.constexpr, DOT: tl.constexpr):  # fmt: skip
    """Inputs of the tile of rows ``row0 + [0, BM)`` (``rmask``: those < N): D == W: the
    chunks ``[WC, BM]`` of x^T in product precision; else the D columns ``[BM]`` fp32."""
    r = tl.arange(0, BM)
    xs = ()
    if D == W:
        for k in tl.static_range((W + WC - 1) // WC):
            c = _cols(k, WC)
            mask = rmask[:, None] & (c < W)[None, :]
            x = tl.load(x_ptr + row0 * W + r[:, None] * W + c[None, :], mask=mask, other=0.0)
            xs = xs + (tl.trans(_act(x, DOT)),)
    else:
        for d in tl.static_range(D):
            x = tl.load(x_ptr + row0 * D + r * D + d, mask=rmask, other=0.0)
            xs = xs + (x.to(tl.float32),)
    return xs


@triton.jit
def _forward(xs, ws, vs, w_ptr, D: tl.constexpr, W: tl.constexpr, WC: tl.constexpr,
             L: tl.constexpr, C: tl.constexpr, BM: tl.constexpr, DOT: tl.constexpr,
             RESIDENT: tl.constexpr, INPUT_MMA: tl.constexpr):  # fmt: skip
    """``(h_0, ..., h_L)``, each a tuple of ``[WC, BM]`` chunks (h_0 = the inputs ``xs``):
    h_1 .. h_{L-1} in product precision, h_L fp32. ``vs`` from ``_vectors``.

    A D <= 3 input layer is the K = 16 product of ``_input_weights`` with INPUT_MMA (training:
    its result comes from a product, so the compiler does not recompute it in each layout its
    uses need, which cost registers), else FMAs (the forward: 4 x fewer tensor-core FLOPs)."""
    NC: tl.constexpr = (W + WC - 1) // WC
    hs = (xs,)
    for layer in tl.static_range(L):
        h = ()
        for j in tl.static_range(NC):
            a = tl.zeros([WC, BM], tl.float32) + vs[layer * NC + j][:, None]
            if layer == 0 and D != W and INPUT_MMA:
                a = _mm(ws[0][j], _input_tile(xs, D, BM, DOT), a, DOT)
            elif layer == 0 and D != W:
                for d in tl.static_range(D):
                    a += vs[(L + C + d) * NC + j][:, None] * xs[d][None, :]
            else:
                for k in tl.static_range(NC):
                    b = _block(ws, w_ptr, layer, k, j, D, W, WC, DOT, RESIDENT)
                    a = _mm(tl.trans(b), hs[layer][k], a, DOT)
            a = _relu(a)
            h = h + ((a if layer == L - 1 else _act(a, DOT)),)
        hs = hs + (h,)
    return hs


@triton.jit
def _tile(t, x_ptr, p_ptr, w_ptr, ws, vs, N, D: tl.constexpr, W: tl.constexpr, WC: tl.constexpr,
          L: tl.constexpr, C: tl.constexpr, BM: tl.constexpr, DOT: tl.constexpr,
          RESIDENT: tl.constexpr, INPUT_MMA: tl.constexpr):  # fmt: skip
    """Tile ``t`` of a persistent loop: its first row ``row0`` (int64), its rows ``r`` and
    ``rmask`` (those < N), the vectors (reloaded per tile when the weights are streamed) and
    its forward ``hs`` (``_forward``)."""
    # 64-bit tile offset, 32-bit offsets inside it: N * W may pass 2^31.
    row0 = tl.cast(t, tl.int64) * BM
    r = tl.arange(0, BM)
    rmask = r < N - row0
    xs = _inputs(x_ptr, row0, rmask, D, W, WC, BM, DOT)
    if not RESIDENT:
        # Streamed weights: the vectors too, each tile (from L1), to free registers.
        vs = _vectors(p_ptr, D, W, WC, L, C)
    hs = _forward(xs, ws, vs, w_ptr, D, W, WC, L, C, BM, DOT, RESIDENT, INPUT_MMA)
    return row0, r, rmask, vs, hs


@triton.jit
def _output(h, vs, bo, c: tl.constexpr, W: tl.constexpr, WC: tl.constexpr, L: tl.constexpr):
    """Output channel ``c`` ``[BM]`` fp32 of a tile: ``bo + sum_f W_o[f, c] h_L[f]``."""
    NC: tl.constexpr = (W + WC - 1) // WC
    out = bo + tl.sum(h[0] * vs[(L + c) * NC][:, None], axis=0)
    for j in tl.static_range(1, NC):
        out += tl.sum(h[j] * vs[(L + c) * NC + j][:, None], axis=0)
    return out

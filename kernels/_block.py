"""Tile math shared by the block kernels: BM pixels forward through a ReLU block, on chip.

Flat parameter layout (mgdl_fast/block.py): hidden layer l (0-based) is W_l [in, W] then b_l [W]
(in = D for l = 0, else W), then the output layer W_o [W, C], b_o [C]; gradients use the same
layout. ``p_ptr`` is that fp32 vector; ``w_ptr`` is the same vector in the dtype the products
read (a bf16 copy for DOT "bf16": half the registers and shared memory per weight tile; else
``p_ptr`` itself), used for the W -> W weights only.

A hidden activation ``[BM, W]`` is a tuple of NC = cdiv(W, WC) column chunks ``[BM, WC]`` (WC a
power of two), and a W -> W weight is read in ``[WC, WC]`` blocks: a chunk is the unit of a
tensor-core product, so W = 256 needs no 256 x 256 operand in shared memory, and a narrower
chunk trades larger products for fewer live registers. Columns past W are masked to 0, so a
padded unit is relu(0) = 0 and contributes nothing. The D <= 3 input layer and the C <= 4
output layer are CUDA-core FMAs and row reductions: a tl.dot with K < 16 does not compile for
the GPU.

DOT picks the precision of the products (see kernels/_config.py): "bf16" rounds both operands
to bf16 and keeps hidden activations in bf16; "bf16emu" is the same arithmetic for the
interpreter; "tf32" and "ieee" keep fp32 activations. Every product accumulates in fp32.
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
    """fp32 ``x`` rounded to the nearest bf16 (ties to even) and kept in fp32: the GPU's
    cvt.rn.bf16.f32, which the interpreter's cast replaces by truncation."""
    u = x.to(tl.uint32, bitcast=True)
    u = (u + 0x7FFF + ((u >> 16) & 1)) & 0xFFFF0000
    return u.to(tl.float32, bitcast=True)


@triton.jit
def _act(h, DOT: tl.constexpr):
    """Activations are stored as the next product reads them: bf16, or fp32."""
    if DOT == "bf16":
        out = h.to(tl.bfloat16)
    elif DOT == "bf16emu":
        out = _round_bf16(h.to(tl.float32))
    else:
        out = h.to(tl.float32)
    return out


@triton.jit
def _mm(a, b, acc, DOT: tl.constexpr):
    """``acc + a [M, K] @ b [K, N]`` in fp32, the product in precision DOT."""
    if DOT == "bf16":
        c = tl.dot(a.to(tl.bfloat16), b.to(tl.bfloat16), acc)
    elif DOT == "bf16emu":
        a16 = _round_bf16(a.to(tl.float32))
        c = tl.dot(a16, _round_bf16(b.to(tl.float32)), acc, input_precision="ieee")
    else:
        c = tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision=DOT)
    return c


@triton.jit
def _cols(j: tl.constexpr, WC: tl.constexpr):
    """Column indices ``[WC]`` of chunk j."""
    return j * WC + tl.arange(0, WC)


@triton.jit
def _wblock(w_ptr, off, kc: tl.constexpr, jc: tl.constexpr, W: tl.constexpr, WC: tl.constexpr):
    """Block (kc, jc) ``[WC, WC]`` of the W x W weight at ``w_ptr + off``, zero past W."""
    r = _cols(kc, WC)
    c = _cols(jc, WC)
    ptrs = w_ptr + off + r[:, None] * W + c[None, :]
    if W % WC == 0:
        w = tl.load(ptrs)
    else:
        w = tl.load(ptrs, mask=(r < W)[:, None] & (c < W)[None, :], other=0.0)
    return w


@triton.jit
def _vec(p_ptr, off, j: tl.constexpr, W: tl.constexpr, WC: tl.constexpr):
    """Chunk j ``[WC]`` fp32 of the W parameters at ``p_ptr + off`` (a bias or a weight row)."""
    c = _cols(j, WC)
    return tl.load(p_ptr + off + c, mask=c < W, other=0.0)


@triton.jit
def _dense(h, w_ptr, p_ptr, off, W: tl.constexpr, WC: tl.constexpr, BM: tl.constexpr,
           DOT: tl.constexpr):  # fmt: skip
    """``relu(h @ W_l + b_l)`` for the W -> W layer whose weight is at ``off`` (its bias
    follows it); ``h`` and the result are tuples of ``[BM, WC]`` chunks."""
    out = ()
    for j in tl.static_range((W + WC - 1) // WC):
        a = tl.zeros([BM, WC], tl.float32)
        for k in tl.static_range((W + WC - 1) // WC):
            a = _mm(h[k], _wblock(w_ptr, off, k, j, W, WC), a, DOT)
        out = out + (_act(tl.maximum(a + _vec(p_ptr, off + W * W, j, W, WC)[None, :], 0.0), DOT),)
    return out


@triton.jit
def _forward(
    x_ptr,
    rows,
    rmask,
    p_ptr,
    w_ptr,
    D: tl.constexpr,
    W: tl.constexpr,
    WC: tl.constexpr,
    L: tl.constexpr,
    BM: tl.constexpr,
    DOT: tl.constexpr,
):
    """Activations of one tile of rows ``[BM]`` (``rmask`` marks those < N):
    ``(h_0, h_1, ..., h_L)``, each a tuple of ``[BM, WC]`` chunks.

    ``h_0`` is the input when D == W and an unused 0 otherwise (the backward reloads D <= 3
    input columns, cheaper than keeping them live).
    """
    if D == W:
        h0 = ()
        for k in tl.static_range((W + WC - 1) // WC):
            c = _cols(k, WC)
            mask = rmask[:, None] & (c < W)[None, :]
            x = tl.load(x_ptr + rows[:, None] * W + c[None, :], mask=mask, other=0.0)
            h0 = h0 + (_act(x, DOT),)
        h = _dense(h0, w_ptr, p_ptr, 0, W, WC, BM, DOT)
    else:
        h0 = 0.0
        h = ()
        for j in tl.static_range((W + WC - 1) // WC):
            a = tl.zeros([BM, WC], tl.float32) + _vec(p_ptr, D * W, j, W, WC)[None, :]
            for d in tl.static_range(D):
                xd = tl.load(x_ptr + rows * D + d, mask=rmask, other=0.0).to(tl.float32)
                a += xd[:, None] * _vec(p_ptr, d * W, j, W, WC)[None, :]
            h = h + (_act(tl.maximum(a, 0.0), DOT),)
    hs = (h0, h)
    for layer in tl.static_range(1, L):
        h = _dense(h, w_ptr, p_ptr, _offset(layer, D, W), W, WC, BM, DOT)
        hs = hs + (h,)
    return hs


@triton.jit
def _output(
    h,
    p_ptr,
    c: tl.constexpr,
    D: tl.constexpr,
    W: tl.constexpr,
    WC: tl.constexpr,
    L: tl.constexpr,
    C: tl.constexpr,
    BM: tl.constexpr,
):
    """Output channel ``c`` ``[BM]`` fp32 of a tile: row reductions of the chunks of h_L."""
    off = _offset(L, D, W)
    out = tl.zeros([BM], tl.float32) + tl.load(p_ptr + off + W * C + c)
    for j in tl.static_range((W + WC - 1) // WC):
        k = _cols(j, WC)
        w_c = tl.load(p_ptr + off + k * C + c, mask=k < W, other=0.0)
        out += tl.sum(h[j].to(tl.float32) * w_c[None, :], axis=1)
    return out

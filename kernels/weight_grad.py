"""Weight gradients of the W x W layers a training kernel cannot keep in registers (its
"scratch layers"): it leaves each tile's input h_l and output gradient g_l in memory, and this
persistent GEMM sums dW_l = h_l^T g_l over the rows, one partial per program, so no tile adds
to global memory."""

from __future__ import annotations

import triton
import triton.language as tl

from ._block import _act, _mm


@triton.jit
def _weight_grad_kernel(
    h_ptr,
    g_ptr,
    acc_ptr,
    N,
    num_tiles,
    num_programs,
    acc_stride,
    offset,
    W: tl.constexpr,
    WC: tl.constexpr,
    BM: tl.constexpr,
    DOT: tl.constexpr,
    STAGES: tl.constexpr,
    ATOMIC: tl.constexpr,
):
    """Block (k, j) = program_id(1) of ``dW [W, W] = h^T g`` for ``h [N, W]`` (x, fp32 or bf16,
    or a scratch slot) and ``g [N, W]`` (product dtype).

    Program i = program_id(0) takes tiles i, i + G, ... (G = ``num_programs``, the training
    kernel's) and writes its block at ``offset`` (the layer's weight, flat layout) of ``acc``
    row i (``[G, acc_stride]`` fp32), or with ATOMIC adds it to the gradient ``[P]`` itself.
    A program without a tile writes zeros.
    """
    NC: tl.constexpr = (W + WC - 1) // WC
    pid = tl.program_id(0)
    blk = tl.program_id(1)
    k = blk // NC
    j = blk % NC
    acc_ptr += pid.to(tl.int64) * acc_stride + offset
    r = tl.arange(0, BM)
    fk = k * WC + tl.arange(0, WC)
    fj = j * WC + tl.arange(0, WC)
    dw = tl.zeros([WC, WC], tl.float32)
    for t in tl.range(pid, num_tiles, num_programs, num_stages=STAGES):
        row0 = tl.cast(t, tl.int64) * BM
        rmask = (r < N - row0)[:, None]
        h = tl.load(h_ptr + row0 * W + r[:, None] * W + fk[None, :],
                    mask=rmask & (fk < W)[None, :], other=0.0)  # fmt: skip
        g = tl.load(g_ptr + row0 * W + r[:, None] * W + fj[None, :],
                    mask=rmask & (fj < W)[None, :], other=0.0)  # fmt: skip
        dw = _mm(tl.trans(_act(h, DOT)), _act(g, DOT), dw, DOT)
    mask = (fk < W)[:, None] & (fj < W)[None, :]
    ptrs = acc_ptr + fk[:, None] * W + fj[None, :]
    if ATOMIC:
        tl.atomic_add(ptrs, dw, mask=mask, sem="relaxed")
    else:
        tl.store(ptrs, dw, mask=mask)

"""Fused full-batch training step for 0.5 * mean((block(x) - y)^2) in one pass over the data."""

from __future__ import annotations

import triton
import triton.language as tl

from ._backward import _backward, _write_grads, _zeros
from ._block import _offset, _output, _tile, _vectors, _weights


@triton.jit
def _grade_step_kernel(
    x_ptr,
    y_ptr,
    p_ptr,
    w_ptr,
    acc_ptr,
    gs_ptr,
    hs_ptr,
    loss_ptr,
    N,
    num_tiles,
    num_programs,
    acc_stride,
    slot,
    grad_scale,
    loss_scale,
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
):
    """Loss and dL/dparams of one step; activations never leave the chip.

    ``x [N, D]`` fp32 or bf16, ``y [N, C]`` fp32, ``p [P]`` fp32 parameters, ``w`` the W x W
    weights in product precision (kernels/_block.py); scratch layers leave g_l and h_l in
    ``gs`` / ``hs`` (slots of ``slot`` elements, kernels/_backward.py). Persistent: program i
    takes tiles i, i + G, ... (G = ``num_programs``) of BM rows, keeps the weights on chip and
    accumulates its gradients over all its tiles, then writes them once into ``acc`` row i
    (``[G, acc_stride]`` fp32, column P its sum of squared errors) for a fixed-order reduction
    afterwards. With ATOMIC, ``acc`` is the zeroed gradient ``[P]`` itself (``acc_stride`` 0)
    and ``loss`` a zeroed scalar, both added to by atomics. ``grad_scale`` = 1 / (N * C),
    ``loss_scale`` = 0.5 / (N * C).
    """
    pid = tl.program_id(0)
    acc_ptr += pid.to(tl.int64) * acc_stride
    vs = _vectors(p_ptr, D, W, WC, L, C)
    ws = _weights(w_ptr, vs, D, W, WC, L, C, DOT, RESIDENT, True)
    bos = ()
    for c in tl.static_range(C):
        bos = bos + (tl.load(p_ptr + _offset(L, D, W) + W * C + c),)
    dws, gvs, gbo = _zeros(D, W, WC, L, C, KEEP)
    sq = tl.sum(tl.zeros([BM], tl.float32), axis=0)
    for t in tl.range(pid, num_tiles, num_programs, num_stages=STAGES):
        row0, r, rmask, vs, hs = _tile(
            t, x_ptr, p_ptr, w_ptr, ws, vs, N, D, W, WC, L, C, BM, DOT, RESIDENT, True
        )
        g_outs = ()
        for c in tl.static_range(C):
            y_c = tl.load(y_ptr + row0 * C + r * C + c, mask=rmask, other=0.0)
            diff = tl.where(rmask, _output(hs[L], vs, bos[c], c, W, WC, L) - y_c, 0.0)
            sq += tl.sum(diff * diff, axis=0)
            g_outs = g_outs + (diff * grad_scale,)
        dws, gvs, gbo = _backward(
            hs, g_outs, ws, vs, dws, gvs, gbo, w_ptr, gs_ptr, hs_ptr, slot, x_ptr, row0,
            rmask,
            D, W, WC, L, C, BM, DOT, RESIDENT, KEEP, False,
        )  # fmt: skip
    _write_grads(acc_ptr, dws, gvs, gbo, D, W, WC, L, C, KEEP, ATOMIC)
    if ATOMIC:
        tl.atomic_add(loss_ptr, sq * loss_scale, sem="relaxed")
    else:
        tl.store(acc_ptr + _offset(L, D, W) + W * C + C, sq)

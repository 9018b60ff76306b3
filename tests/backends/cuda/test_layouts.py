"""The index arithmetic of the kernels, replayed on the CPU.

A NumPy model of ldmatrix (plain and .trans) and mma.m16n8k16 as the PTX ISA defines their
fragments, driven by the same address formulas as csrc/include/{mma,layers,wgrad}.cuh
(swz, load_a/store_a, gemm_fwd, gemm_bwd, wgrad_mma); the wgmma descriptors; the butterfly
column sums (rows.cuh add_column_sums), the weight-gradient flush's ownership (wgrad.cuh) and
the alternating stage slots (block_train.cu). It checks that those formulas compute the
intended results; it cannot check the CUDA code itself, which needs a GPU (test_ops.py). Keep
the formulas here in step with the sources.
"""

from __future__ import annotations

import numpy as np
import pytest

LANES = np.arange(32)


def swz(w: int, r: int, k: int, rows: int) -> int:
    """Byte offset of element (r, k): csrc/include/mma.cuh swz<W>."""
    if w >= 64:
        chunk = ((k >> 3) & 7) ^ (r & 7)
        return (k >> 6) * rows * 128 + r * 128 + (chunk << 4) + (k & 7) * 2
    chunk = ((k >> 3) & 3) ^ ((r >> 1) & 3)
    return r * 64 + (chunk << 4) + (k & 7) * 2


class Smem:
    """Shared memory holding one value per bf16 slot (byte offset / 2)."""

    def __init__(self, nbytes: int):
        self.v = np.full(nbytes // 2, np.nan)

    def put_matrix(self, base: int, m: np.ndarray, w: int, rows: int) -> None:
        for r in range(m.shape[0]):
            for k in range(m.shape[1]):
                self.v[(base + swz(w, r, k, rows)) // 2] = m[r, k]

    def ldsm(self, addrs: list[int], trans: bool) -> np.ndarray:
        """ldmatrix.x4: regs[lane, matrix] = the lane's 2 elements of each 8x8 matrix."""
        regs = np.empty((32, 4, 2))
        for m in range(4):
            mat = np.array([self.v[addrs[8 * m + r] // 2 + np.arange(8)] for r in range(8)])
            for lane in range(32):
                g, q = lane >> 2, lane & 3
                pair = mat[2 * q : 2 * q + 2, g] if trans else mat[g, 2 * q : 2 * q + 2]
                regs[lane, m] = pair
        return regs


def a_matrix(a: np.ndarray) -> np.ndarray:
    """The 16 x 16 A operand from per-lane fragments a[lane, reg, 2]."""
    out = np.empty((16, 16))
    for lane in range(32):
        g, q = lane >> 2, lane & 3
        for j in range(4):
            out[g + 8 * (j & 1), 8 * (j >> 1) + 2 * q + np.arange(2)] = a[lane, j]
    return out


def mma(acc: np.ndarray, a: np.ndarray, b0: np.ndarray, b1: np.ndarray) -> None:
    """acc[lane, 4] += A * B for one m16n8k16 tile (fragments as in the ISA)."""
    b = np.empty((16, 8))
    for lane in range(32):
        g, q = lane >> 2, lane & 3
        b[2 * q : 2 * q + 2, g], b[8 + 2 * q : 10 + 2 * q, g] = b0[lane], b1[lane]
    c = a_matrix(a) @ b
    for lane in range(32):
        g, q = lane >> 2, lane & 3
        acc[lane] += [c[g, 2 * q], c[g, 2 * q + 1], c[g + 8, 2 * q], c[g + 8, 2 * q + 1]]


def c_matrix(acc: np.ndarray, w: int) -> np.ndarray:
    """16 x W from acc[t][lane, 4] (C fragments of n-tile t)."""
    out = np.empty((16, w))
    for t in range(w // 8):
        for lane in range(32):
            g, q = lane >> 2, lane & 3
            out[g, 8 * t + 2 * q : 8 * t + 2 * q + 2] = acc[t][lane, :2]
            out[g + 8, 8 * t + 2 * q : 8 * t + 2 * q + 2] = acc[t][lane, 2:]
    return out


def pack_a(acc: list[np.ndarray]) -> list[np.ndarray]:
    """layers.cuh pack_a: C tiles 2k, 2k+1 become A fragment k."""
    frags = []
    for k in range(len(acc) // 2):
        a = np.empty((32, 4, 2))
        a[:, 0], a[:, 1] = acc[2 * k][:, 0:2], acc[2 * k][:, 2:4]
        a[:, 2], a[:, 3] = acc[2 * k + 1][:, 0:2], acc[2 * k + 1][:, 2:4]
        frags.append(a)
    return frags


def acc_of(m: np.ndarray) -> list[np.ndarray]:
    """C fragments of a 16 x W matrix."""
    acc = []
    for t in range(m.shape[1] // 8):
        tile = np.empty((32, 4))
        for lane in range(32):
            g, q = lane >> 2, lane & 3
            tile[lane] = [*m[g, 8 * t + 2 * q : 8 * t + 2 * q + 2], *m[g + 8, 8 * t + 2 * q :][:2]]
        acc.append(tile)
    return acc


def gemm(smem: Smem, a: list[np.ndarray], wbase: int, w: int, trans: bool) -> np.ndarray:
    """layers.cuh gemm_fwd (trans=False) / gemm_bwd (trans=True), mma.sync branch."""
    acc = [np.zeros((32, 4)) for _ in range(w // 8)]
    mi, low = LANES >> 3, LANES & 7
    for k in range(w // 16):
        for p in range(w // 16):
            if trans:
                rows, cols = 16 * k + 8 * (mi & 1) + low, 16 * p + 8 * (mi >> 1)
            else:
                rows, cols = 16 * p + 8 * (mi >> 1) + low, 16 * k + 8 * (mi & 1)
            addrs = [wbase + swz(w, r, c, w) for r, c in zip(rows, cols)]
            b = smem.ldsm(addrs, trans)
            mma(acc[2 * p], a[k], b[:, 0], b[:, 1])
            mma(acc[2 * p + 1], a[k], b[:, 2], b[:, 3])
    return c_matrix(acc, w)


@pytest.mark.parametrize("w", [32, 64])
def test_layer_products_read_the_weights_right(w):
    rng = np.random.default_rng(w)
    weight = rng.standard_normal((w, w))  # [in, out] as in the flat vector
    h = rng.standard_normal((16, w))
    smem = Smem(w * w * 2)
    smem.put_matrix(0, weight.T, w, w)  # smem.cuh load_params: row n (out), column k (in)
    a = pack_a(acc_of(h))
    np.testing.assert_allclose(gemm(smem, a, 0, w, trans=False), h @ weight, atol=1e-9)
    np.testing.assert_allclose(gemm(smem, a, 0, w, trans=True), h @ weight.T, atol=1e-9)


@pytest.mark.parametrize("w", [32, 64])
def test_staging_round_trip_and_weight_gradient(w):
    rows, rng = 64, np.random.default_rng(7)
    h, g = rng.standard_normal((rows, w)), rng.standard_normal((rows, w))
    smem = Smem(2 * rows * w * 2)
    hbase, gbase = 0, rows * w * 2
    for warp in range(rows // 16):
        for base, m in ((hbase, h), (gbase, g)):
            # layers.cuh store_a: fragment j of k-tile k -> row g + 8(j&1), col 16k + 8(j>>1) + 2q
            for k, frag in enumerate(pack_a(acc_of(m[16 * warp : 16 * warp + 16]))):
                for lane in range(32):
                    gg, q = lane >> 2, lane & 3
                    for j in range(4):
                        r, c = 16 * warp + gg + 8 * (j & 1), 16 * k + 8 * (j >> 1) + 2 * q
                        off = base + swz(w, r, c, rows)
                        smem.v[off // 2 : off // 2 + 2] = frag[lane, j]
    mi, low = LANES >> 3, LANES & 7
    for warp in range(rows // 16):  # layers.cuh load_a of the warp's own rows
        r = 16 * warp + 8 * (mi & 1) + low
        for k in range(w // 16):
            frag = smem.ldsm(
                [hbase + swz(w, rr, 16 * k + 8 * (m >> 1), rows) for rr, m in zip(r, mi)], False
            )
            np.testing.assert_array_equal(
                a_matrix(frag), h[16 * warp : 16 * warp + 16, 16 * k : 16 * k + 16]
            )
    nb = min(w, 64)
    dw = np.zeros((w, w))
    for mb in range(w // 16):  # wgrad.cuh wgrad_mma, every task
        for n0 in range(0, w, nb):
            acc = [np.zeros((32, 4)) for _ in range(nb // 8)]
            for k in range(rows // 16):
                addrs = [
                    hbase + swz(w, 16 * k + 8 * (m >> 1) + lo, 16 * mb + 8 * (m & 1), rows)
                    for m, lo in zip(mi, low)
                ]
                a = smem.ldsm(addrs, True)
                for p in range(nb // 16):
                    addrs = [
                        gbase + swz(w, 16 * k + 8 * (m & 1) + lo, n0 + 16 * p + 8 * (m >> 1), rows)
                        for m, lo in zip(mi, low)
                    ]
                    b = smem.ldsm(addrs, True)
                    mma(acc[2 * p], a, b[:, 0], b[:, 1])
                    mma(acc[2 * p + 1], a, b[:, 2], b[:, 3])
            dw[16 * mb : 16 * mb + 16, n0 : n0 + nb] = c_matrix(acc, nb)
    np.testing.assert_allclose(dw, h.T @ g, atol=1e-9)


def gmma_address(start: int, mn: int, k: int, *, mn_major: bool, wide: bool, lbo: int, sbo: int):
    """Byte address wgmma reads for operand element (mn, k) of one k16 step, from a descriptor
    in the canonical layouts (PTX ISA; CUTLASS make_gmma_desc): 128B swizzle if wide, else
    64B. The swizzle XORs address bits 7.. into bits 4.. of the whole address."""
    row_bytes = 128 if wide else 64
    atom = row_bytes // 2
    if mn_major:
        addr = start + (mn % atom) * 2 + (mn // atom) * lbo + (k % 8) * row_bytes + (k // 8) * sbo
    else:
        addr = start + (mn % 8) * row_bytes + (mn // 8) * sbo + k * 2
    mask = 7 if wide else 3
    return addr ^ (((addr >> 7) & mask) << 4)


@pytest.mark.parametrize("w", [32, 64, 128, 256])
def test_wgmma_descriptors_address_the_staged_layouts(w):
    """layers.cuh gemm_wgmma and wgrad.cuh wgrad_wgmma: every element an instruction reads
    is the element swz<W> stored there (weights [out][in], tiles [rows][W])."""
    wide, n_inst = w >= 64, min(w, 64)
    for k in range(w // 16):
        for j in range(w // n_inst):
            if wide:
                fwd = j * 64 * 128 + (k // 4) * w * 128 + (k % 4) * 32
                bwd = j * w * 128 + k * 16 * 128
            else:
                fwd, bwd = k * 32, k * 16 * 64
            sbo = 1024 if wide else 512
            lbo = w * 128 if wide else w * 64
            for n in range(n_inst):
                for kk in range(16):
                    got = gmma_address(fwd, n, kk, mn_major=False, wide=wide, lbo=16, sbo=sbo)
                    assert got == swz(w, n_inst * j + n, 16 * k + kk, w)
                    got = gmma_address(bwd, n, kk, mn_major=True, wide=wide, lbo=lbo, sbo=sbo)
                    assert got == swz(w, 16 * k + kk, n_inst * j + n, w)
    if not wide:
        return
    rows = 128
    for k in range(rows // 16):
        for mb in range(w // 64):
            start = mb * rows * 128 + k * 2048
            for m in range(64):
                for kk in range(16):
                    got = gmma_address(
                        start, m, kk, mn_major=True, wide=True, lbo=rows * 128, sbo=1024
                    )
                    assert got == swz(w, 16 * k + kk, 64 * mb + m, rows)


def column_sums(w: int, v: np.ndarray) -> dict[int, list[tuple[int, float]]]:
    """rows.cuh add_column_sums: v[lane, t, e] -> {column: [(lane, value)]} as the lanes add them
    to the slot, with halve_sums' shuffles (lane ^ 4, ^ 8, ^ 16) on chunks of up to 128 columns."""
    cols = min(w, 128)
    n = cols // 4
    writes: dict[int, list[tuple[int, float]]] = {}
    for c0 in range(0, w, cols):
        a = [[v[lane, c0 // 8 + j // 2, j % 2] for j in range(n)] for lane in range(32)]
        for step, half in enumerate((n // 2, n // 4, n // 8)):
            new = []
            for lane in range(32):
                upper = (lane >> 2 >> step) & 1
                partner = lane ^ (4 << step)
                pu = (partner >> 2 >> step) & 1
                keep = [a[lane][i + half] if upper else a[lane][i] for i in range(half)]
                give = [a[partner][i] if pu else a[partner][i + half] for i in range(half)]
                new.append([k + g for k, g in zip(keep, give)])
            a = new
        for lane in range(32):
            g, q = lane >> 2, lane & 3
            first = (cols // 32) * (4 * (g & 1) + 2 * ((g >> 1) & 1) + (g >> 2))
            for i in range(cols // 32):
                j = first + i
                col = c0 + 8 * (j // 2) + 2 * q + j % 2
                writes.setdefault(col, []).append((lane, a[lane][i]))
    return writes


@pytest.mark.parametrize("w", [32, 64, 128, 256])
def test_column_sums_have_one_writer_per_column_and_the_right_sums(w):
    rng = np.random.default_rng(w)
    v = rng.standard_normal((32, w // 8, 2))
    writes = column_sums(w, v)
    assert sorted(writes) == list(range(w))
    for col, entries in writes.items():
        assert len(entries) == 1, f"column {col} has {len(entries)} writers"
        t, e, q = col // 8, col % 2, (col % 8) // 2
        expected = sum(v[4 * g + q, t, e] for g in range(8))
        np.testing.assert_allclose(entries[0][1], expected, rtol=1e-12)
    shuffles = sum(n for n in (min(w, 128) // 8, min(w, 128) // 16, min(w, 128) // 32))
    assert shuffles * (w // min(w, 128)) == 7 * w // 32


@pytest.mark.parametrize("w, pitch", [(128, 128 + 8), (128, 128), (64, 64 + 8), (256, 256)])
def test_weight_gradient_flush_owns_every_element_once(w, pitch):
    """wgrad.cuh flush_smem / flush_global: thread (warp, lane) of task (mb, nb) adds C fragment
    (t, h) at float offset (row0 + g) * pitch + col0 + 2q + 8t + 8h * pitch (a float2): every dW
    element gets exactly one owner per tile, the same each tile."""
    owners: dict[tuple[int, int], tuple[int, int, int, int]] = {}
    for task in range((w // 64) ** 2):
        mb, nb = task % (w // 64), task // (w // 64)
        for warp in range(4):
            row0, col0 = 64 * mb + 16 * (warp & 3), 64 * nb
            for lane in range(32):
                g, q = lane >> 2, lane & 3
                for t in range(8):
                    for h in range(2):
                        offset = (row0 + g) * pitch + col0 + 2 * q + 8 * t + 8 * h * pitch
                        assert offset % 2 == 0, "float2 alignment"
                        for e in range(2):
                            row, col = divmod(offset + e, pitch)
                            assert (row, col) not in owners
                            owners[(row, col)] = (task, warp, lane, t)
                            assert (row, col) == (row0 + g + 8 * h, col0 + 8 * t + 2 * q + e)
    assert len(owners) == w * w


@pytest.mark.parametrize(
    "dims", [(2, 128, 2, 1), (128, 128, 2, 1), (128, 128, 3, 1), (3, 64, 4, 2)]
)
def test_alternating_stage_slots_never_collide(ext, dims):
    """block_train.cu first_slot and the backward's slot choice: with alternation a tile of
    parity p writes h_first (or x) to slot 0 or num_mma + 1, the later inputs to 1 .. num_mma - 1
    and g to num_mma, all inside the plan's stage buffers and distinct."""
    d, w, layers, c = dims
    plan = ext.plan(d, w, layers, c, True, 231_424)
    num_mma = layers - (1 if d != w else 0)
    slots = num_mma + 1 + (1 if plan["alternate"] else 0)
    for parity in (0, 1):
        first = num_mma + 1 if plan["alternate"] and parity else 0
        used = [first, *range(1, num_mma), num_mma]
        assert len(set(used)) == len(used) and max(used) < slots
    if plan["alternate"]:
        assert {0, num_mma + 1} == {num_mma + 1 if p else 0 for p in (0, 1)}

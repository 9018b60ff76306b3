// Weight gradient of one tensor-core layer over a tile: dW += h^T g with h [rows, W] (the
// layer's input) and g [rows, W] (its output gradient) staged in shared memory by every warp.
// The block's warps split dW into output tiles, reduce over the tile's rows in registers, then
// add the result into the block's fp32 accumulator `dst` (shared memory or its row of the L2
// partials): every element has one owning thread, so the add needs no atomics and its order is
// fixed, which keeps the whole gradient deterministic.
#pragma once
#include "layers.cuh"

namespace mgdl {

// dst[row][col] (+)= the C fragments of acc, rows row0 + g (+8), cols col0 + 8t + 2q (+1).
template <int NT>
__device__ __forceinline__ void flush_acc(const float (&acc)[NT][4], float* dst, int pitch,
                                          int row0, int col0, bool first) {
  const int lane = lane_id(), g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int t = 0; t < NT; ++t)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      float* at = dst + (row0 + g + 8 * h) * pitch + col0 + 8 * t + 2 * q;
      float2* p = reinterpret_cast<float2*>(at);
      float2 v = make_float2(acc[t][2 * h], acc[t][2 * h + 1]);
      if (!first) {
        const float2 old = *p;
        v.x += old.x;
        v.y += old.y;
      }
      *p = v;
    }
}

// mma.sync: one warp per 16 x NB block of dW; A = h^T and B = g both through ldmatrix.trans.
template <int W>
__device__ __forceinline__ void wgrad_mma(float* dst, int pitch, bool first, uint32_t h,
                                          uint32_t g, int rows, int warps) {
  constexpr int NB = W < 64 ? W : 64;
  const int lane = lane_id(), mi = lane >> 3, warp = threadIdx.x >> 5;
  for (int task = warp; task < (W / 16) * (W / NB); task += warps) {
    const int mb = task % (W / 16), nb = task / (W / 16);
    float acc[NB / 8][4];
    acc_zero<NB>(acc);
    for (int k = 0; k < rows / 16; ++k) {
      uint32_t a[4];
      ldsm_x4_t(h + swz<W>(16 * k + 8 * (mi >> 1) + (lane & 7), 16 * mb + 8 * (mi & 1), rows), a);
#pragma unroll
      for (int p = 0; p < NB / 16; ++p) {
        uint32_t b[4];
        const int col = nb * NB + 16 * p + 8 * (mi >> 1);
        ldsm_x4_t(g + swz<W>(16 * k + 8 * (mi & 1) + (lane & 7), col, rows), b);
        mma_bf16(acc[2 * p], a, b[0], b[1]);
        mma_bf16(acc[2 * p + 1], a, b[2], b[3]);
      }
    }
    flush_acc<NB / 8>(acc, dst, pitch, 16 * mb, nb * NB, first);
  }
}

#if defined(MGDL_WGMMA)
// wgmma: one warpgroup per 64 x 64 block of dW; A = h^T and B = g both MN-major descriptors.
template <int W>
__device__ __forceinline__ void wgrad_wgmma(float* dst, int pitch, bool first, uint32_t h,
                                            uint32_t g, int rows, int warps) {
  const int warp = threadIdx.x >> 5, atom = rows * 128;
  for (int task = warp / 4; task < (W / 64) * (W / 64); task += warps / 4) {
    const int mb = task % (W / 64), nb = task / (W / 64);
    float acc[8][4];
    acc_zero<64>(acc);
    __syncwarp();
    fence_acc<64>(acc);
    wgmma_fence();
    for (int k = 0; k < rows / 16; ++k) {
      const uint64_t da = wgmma_desc(h + mb * atom + k * 2048, atom, 1024, 1);
      const uint64_t db = wgmma_desc(g + nb * atom + k * 2048, atom, 1024, 1);
      wgmma_ss_n64<1, 1>(reinterpret_cast<float(&)[32]>(acc[0][0]), da, db);
    }
    wgmma_commit();
    wgmma_wait_all();
    fence_acc<64>(acc);
    flush_acc<8>(acc, dst, pitch, 64 * mb + 16 * (warp & 3), 64 * nb, first);
  }
}
#endif

template <int W>
__device__ __forceinline__ void wgrad(float* dst, int pitch, bool first, uint32_t h, uint32_t g,
                                      int rows, int warps) {
#if defined(MGDL_WGMMA)
  if constexpr (W >= 64) {
    wgrad_wgmma<W>(dst, pitch, first, h, g, rows, warps);
    return;
  }
#endif
  wgrad_mma<W>(dst, pitch, first, h, g, rows, warps);
}

}  // namespace mgdl

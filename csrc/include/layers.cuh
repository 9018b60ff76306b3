// Per-warp layer products on register fragments: a warp owns 16 rows of the tile, holds its
// activations as A fragments (uint32_t a[W/16][4]) and a layer's output as C fragments
// (float acc[W/8][4]); the weights are swizzled bf16 [out][in] matrices in shared memory.
// sm_90a issues one warpgroup wgmma (A from registers, B by descriptor) where the other
// architectures issue mma.sync with B through ldmatrix; both read the same shared layout.
#pragma once
#include "mma.cuh"
#include "wgmma.cuh"

namespace mgdl {

__device__ __forceinline__ int lane_id() { return threadIdx.x & 31; }

// acc[t][s] = b[column of (t, s)]: the bias is the accumulator's starting value.
template <int W>
__device__ __forceinline__ void acc_bias(float (&acc)[W / 8][4], const float* b) {
  const int q = lane_id() & 3;
#pragma unroll
  for (int t = 0; t < W / 8; ++t) {
    const float2 v = *reinterpret_cast<const float2*>(b + 8 * t + 2 * q);
    acc[t][0] = v.x;
    acc[t][1] = v.y;
    acc[t][2] = v.x;
    acc[t][3] = v.y;
  }
}

template <int W>
__device__ __forceinline__ void acc_zero(float (&acc)[W / 8][4]) {
#pragma unroll
  for (int t = 0; t < W / 8; ++t) acc[t][0] = acc[t][1] = acc[t][2] = acc[t][3] = 0.0f;
}

// The C fragments of n-tiles 2k and 2k+1 are the A fragment of k-tile k (see mma.cuh).
template <int W>
__device__ __forceinline__ void pack_a(const float (&acc)[W / 8][4], uint32_t (&a)[W / 16][4]) {
#pragma unroll
  for (int k = 0; k < W / 16; ++k) {
    a[k][0] = pack_bf16(acc[2 * k][0], acc[2 * k][1]);
    a[k][1] = pack_bf16(acc[2 * k][2], acc[2 * k][3]);
    a[k][2] = pack_bf16(acc[2 * k + 1][0], acc[2 * k + 1][1]);
    a[k][3] = pack_bf16(acc[2 * k + 1][2], acc[2 * k + 1][3]);
  }
}

// max(v, 0) that keeps NaN (PTX max.NaN, sm_80+): fmaxf(NaN, 0) is 0, which would hide a
// weight that became NaN from the trainer's divergence flag and give finite garbage instead.
__device__ __forceinline__ float relu_nan(float v) {
  float r;
  asm("max.NaN.f32 %0, %1, 0f00000000;" : "=f"(r) : "f"(v));
  return r;
}

template <int W>
__device__ __forceinline__ void relu(float (&acc)[W / 8][4]) {
#pragma unroll
  for (int t = 0; t < W / 8; ++t)
#pragma unroll
    for (int s = 0; s < 4; ++s) acc[t][s] = relu_nan(acc[t][s]);
}

// A fragments of the warp's 16 rows (tile rows rbase..rbase+15) of a staged [rows][W] tile.
template <int W>
__device__ __forceinline__ void load_a(uint32_t (&a)[W / 16][4], uint32_t tile, int rows,
                                       int rbase) {
  const int lane = lane_id(), mi = lane >> 3;
  const int r = rbase + 8 * (mi & 1) + (lane & 7);
#pragma unroll
  for (int k = 0; k < W / 16; ++k) ldsm_x4(tile + swz<W>(r, 16 * k + 8 * (mi >> 1), rows), a[k]);
}

template <int W>
__device__ __forceinline__ void store_a(const uint32_t (&a)[W / 16][4], uint8_t* tile, int rows,
                                        int rbase) {
  const int lane = lane_id(), g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int k = 0; k < W / 16; ++k)
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int r = rbase + g + 8 * (j & 1), col = 16 * k + 8 * (j >> 1) + 2 * q;
      *reinterpret_cast<uint32_t*>(tile + swz<W>(r, col, rows)) = a[k][j];
    }
}

// Zeroes acc where the staged activation h (the same rows and columns) is <= 0, as torch's
// threshold_backward does: a NaN activation passes its gradient on rather than hiding it.
template <int W>
__device__ __forceinline__ void relu_mask(float (&acc)[W / 8][4], const uint8_t* tile, int rows,
                                          int rbase) {
  const int lane = lane_id(), g = lane >> 2, q = lane & 3;
#pragma unroll
  for (int t = 0; t < W / 8; ++t)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const uint32_t off = swz<W>(rbase + g + 8 * h, 8 * t + 2 * q, rows);
      const float2 v = unpack_bf16(*reinterpret_cast<const uint32_t*>(tile + off));
      acc[t][2 * h] = v.x <= 0.0f ? 0.0f : acc[t][2 * h];
      acc[t][2 * h + 1] = v.y <= 0.0f ? 0.0f : acc[t][2 * h + 1];
    }
}

#if defined(MGDL_WGMMA)
template <int W>
__device__ __forceinline__ void fence_acc(float (&acc)[W / 8][4]) {
#pragma unroll
  for (int t = 0; t < W / 8; ++t)
#pragma unroll
    for (int s = 0; s < 4; ++s) fence_operand(acc[t][s]);
}

// One warpgroup product acc += A * B with B = W_l (Trans = 0: K-major [out][in] rows) or
// B = W_l^T (Trans = 1: the same rows read MN-major), 64 (32) output columns per instruction.
template <int W, int Trans>
__device__ __forceinline__ void gemm_wgmma(float (&acc)[W / 8][4], const uint32_t (&a)[W / 16][4],
                                           uint32_t w) {
  __syncwarp();
  fence_acc<W>(acc);
  wgmma_fence();
  if constexpr (W == 32) {
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const uint32_t start = Trans ? w + k * 16 * 64 : w + k * 32;
      wgmma_rs_n32<Trans>(reinterpret_cast<float(&)[16]>(acc[0][0]), a[k],
                          wgmma_desc(start, 32 * 64, 512, 2));
    }
  } else {
#pragma unroll
    for (int j = 0; j < W / 64; ++j)
#pragma unroll
      for (int k = 0; k < W / 16; ++k) {
        const uint32_t start = Trans ? w + j * W * 128 + k * 16 * 128
                                     : w + j * 64 * 128 + (k / 4) * W * 128 + (k % 4) * 32;
        wgmma_rs_n64<Trans>(reinterpret_cast<float(&)[32]>(acc[8 * j][0]), a[k],
                            wgmma_desc(start, Trans ? W * 128 : 16, 1024, 1));
      }
  }
  wgmma_commit();
  wgmma_wait_all();
  fence_acc<W>(acc);
}
#endif

// acc += A * W_l: forward through a layer whose [out][in] bf16 matrix starts at `w`.
template <int W>
__device__ __forceinline__ void gemm_fwd(float (&acc)[W / 8][4], const uint32_t (&a)[W / 16][4],
                                         uint32_t w) {
#if defined(MGDL_WGMMA)
  gemm_wgmma<W, 0>(acc, a, w);
#else
  const int lane = lane_id(), mi = lane >> 3;
#pragma unroll
  for (int k = 0; k < W / 16; ++k)
#pragma unroll
    for (int p = 0; p < W / 16; ++p) {
      uint32_t b[4];
      ldsm_x4(w + swz<W>(16 * p + 8 * (mi >> 1) + (lane & 7), 16 * k + 8 * (mi & 1), W), b);
      mma_bf16(acc[2 * p], a[k], b[0], b[1]);
      mma_bf16(acc[2 * p + 1], a[k], b[2], b[3]);
    }
#endif
}

// acc += A * W_l^T: the input gradient of a layer from its output gradient A.
template <int W>
__device__ __forceinline__ void gemm_bwd(float (&acc)[W / 8][4], const uint32_t (&a)[W / 16][4],
                                         uint32_t w) {
#if defined(MGDL_WGMMA)
  gemm_wgmma<W, 1>(acc, a, w);
#else
  const int lane = lane_id(), mi = lane >> 3;
#pragma unroll
  for (int k = 0; k < W / 16; ++k)
#pragma unroll
    for (int p = 0; p < W / 16; ++p) {
      uint32_t b[4];
      ldsm_x4_t(w + swz<W>(16 * k + 8 * (mi & 1) + (lane & 7), 16 * p + 8 * (mi >> 1), W), b);
      mma_bf16(acc[2 * p], a[k], b[0], b[1]);
      mma_bf16(acc[2 * p + 1], a[k], b[2], b[3]);
    }
#endif
}

}  // namespace mgdl

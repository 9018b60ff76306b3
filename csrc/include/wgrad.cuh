// Weight gradient of one tensor-core layer over a tile: dW += h^T g with h [ROWS, W] (the
// layer's input) and g [ROWS, W] (its output gradient) staged in shared memory by every warp.
// The block's warps split dW into output tiles and reduce over the tile's rows in registers (a
// compile-time trip count: the K loop unrolls, so ptxas keeps the wgmma accumulators in place
// and injects no warpgroup.arrive), then add the result into the block's fp32 accumulator:
// shared memory, or its row of the L2 partials. Each element has one owning thread, the same on
// every tile, so its additions happen in program order and the gradient is deterministic.
#pragma once
#include "layers.cuh"

namespace mgdl {

// Where one layer's dW accumulates: shared memory at `smem` ([W][W + kDwPad], when in_smem) or
// `global` (the block's row of the partials, [W][W]), whose first tile stores instead of adding,
// so the partials need no zeroing.
struct DwTarget {
  uint32_t smem;
  float* global;
  bool in_smem, first;
};

__device__ __forceinline__ float2 lds_f2(uint32_t addr) {
  float2 v;
  asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];\n" : "=f"(v.x), "=f"(v.y) : "r"(addr));
  return v;
}

__device__ __forceinline__ void sts_f2(uint32_t addr, float x, float y) {
  asm volatile("st.shared.v2.f32 [%0], {%1, %2};\n" ::"r"(addr), "f"(x), "f"(y) : "memory");
}

// Shared dW[row][col] += the C fragments of acc (rows row0 + g (+8), cols col0 + 8t + 2q (+1)).
// Every load is issued before the first add, so their latencies overlap (explicit shared-space
// accesses: through a generic pointer the compiler could not tell them from global memory).
template <int W, int NT>
__device__ __forceinline__ void flush_smem(const float (&acc)[NT][4], uint32_t dw, int row0,
                                           int col0) {
  constexpr uint32_t kPitch = (W + kDwPad) * 4u;
  const int lane = lane_id(), g = lane >> 2, q = lane & 3;
  const uint32_t at = dw + uint32_t(row0 + g) * kPitch + uint32_t(col0 + 2 * q) * 4u;
  float2 old[NT][2];
#pragma unroll
  for (int t = 0; t < NT; ++t)
#pragma unroll
    for (int h = 0; h < 2; ++h) old[t][h] = lds_f2(at + h * 8 * kPitch + t * 32);
#pragma unroll
  for (int t = 0; t < NT; ++t)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      sts_f2(at + h * 8 * kPitch + t * 32, old[t][h].x + acc[t][2 * h],
             old[t][h].y + acc[t][2 * h + 1]);
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
// dst[0..1] += (a, b) as one vector reduction performed in L2 (sm_90): nothing is read back.
__device__ __forceinline__ void red_add_v2(float* dst, float a, float b) {
  asm volatile("red.relaxed.gpu.global.add.v2.f32 [%0], {%1, %2};\n" ::"l"(dst), "f"(a), "f"(b)
               : "memory");
}
#endif

// The same into the block's L2 row (pitch W): stores on the first tile, then vector reductions
// (sm_90) or, before sm_90, all loads issued before the stores.
template <int W, int NT>
__device__ __forceinline__ void flush_global(const float (&acc)[NT][4], float* dw, int row0,
                                             int col0, bool first) {
  const int lane = lane_id(), g = lane >> 2, q = lane & 3;
  float2* at = reinterpret_cast<float2*>(dw + (row0 + g) * W + col0 + 2 * q);
  constexpr int kHalf = 8 * W / 2;
  if (first) {
#pragma unroll
    for (int t = 0; t < NT; ++t)
#pragma unroll
      for (int h = 0; h < 2; ++h)
        at[h * kHalf + 4 * t] = make_float2(acc[t][2 * h], acc[t][2 * h + 1]);
    return;
  }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
#pragma unroll
  for (int t = 0; t < NT; ++t)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      red_add_v2(reinterpret_cast<float*>(at + h * kHalf + 4 * t), acc[t][2 * h],
                 acc[t][2 * h + 1]);
#else
  float2 old[NT][2];
#pragma unroll
  for (int t = 0; t < NT; ++t)
#pragma unroll
    for (int h = 0; h < 2; ++h) old[t][h] = at[h * kHalf + 4 * t];
#pragma unroll
  for (int t = 0; t < NT; ++t)
#pragma unroll
    for (int h = 0; h < 2; ++h)
      at[h * kHalf + 4 * t] =
          make_float2(old[t][h].x + acc[t][2 * h], old[t][h].y + acc[t][2 * h + 1]);
#endif
}

template <int W, int NT>
__device__ __forceinline__ void flush_acc(const float (&acc)[NT][4], const DwTarget& dst,
                                          int row0, int col0) {
  if (dst.in_smem)
    flush_smem<W, NT>(acc, dst.smem, row0, col0);
  else
    flush_global<W, NT>(acc, dst.global, row0, col0, dst.first);
}

// mma.sync: one warp per 16 x NB block of dW; A = h^T and B = g both through ldmatrix.trans.
template <int W, int ROWS, int WARPS>
__device__ __forceinline__ void wgrad_mma(const DwTarget& dst, uint32_t h, uint32_t g) {
  constexpr int NB = W < 64 ? W : 64;
  const int lane = lane_id(), mi = lane >> 3, warp = threadIdx.x >> 5;
  for (int task = warp; task < (W / 16) * (W / NB); task += WARPS) {
    const int mb = task % (W / 16), nb = task / (W / 16);
    float acc[NB / 8][4];
    acc_zero<NB>(acc);
#pragma unroll
    for (int k = 0; k < ROWS / 16; ++k) {
      uint32_t a[4];
      ldsm_x4_t(h + swz<W>(16 * k + 8 * (mi >> 1) + (lane & 7), 16 * mb + 8 * (mi & 1), ROWS), a);
#pragma unroll
      for (int p = 0; p < NB / 16; ++p) {
        uint32_t b[4];
        const int col = nb * NB + 16 * p + 8 * (mi >> 1);
        ldsm_x4_t(g + swz<W>(16 * k + 8 * (mi & 1) + (lane & 7), col, ROWS), b);
        mma_bf16(acc[2 * p], a, b[0], b[1]);
        mma_bf16(acc[2 * p + 1], a, b[2], b[3]);
      }
    }
    flush_acc<W, NB / 8>(acc, dst, 16 * mb, nb * NB);
  }
}

#if defined(MGDL_WGMMA)
// wgmma: one warpgroup per 64 x 64 block of dW; A = h^T and B = g both MN-major descriptors.
template <int W, int ROWS, int WARPS>
__device__ __forceinline__ void wgrad_wgmma(const DwTarget& dst, uint32_t h, uint32_t g) {
  constexpr int kAtom = ROWS * 128, kTasks = (W / 64) * (W / 64), kGroups = WARPS / 4;
  const int warp = threadIdx.x >> 5;
#pragma unroll
  for (int round = 0; round < (kTasks + kGroups - 1) / kGroups; ++round) {
    const int task = round * kGroups + warp / 4;
    // Warpgroup-uniform: a warpgroup without a task skips the MMAs as a whole.
    if (task >= kTasks) break;
    const int mb = task % (W / 64), nb = task / (W / 64);
    float acc[8][4];
    acc_zero<64>(acc);
    __syncwarp();
    fence_acc<64>(acc);
    wgmma_fence();
#pragma unroll
    for (int k = 0; k < ROWS / 16; ++k) {
      const uint64_t da = wgmma_desc(h + mb * kAtom + k * 2048, kAtom, 1024, 1);
      const uint64_t db = wgmma_desc(g + nb * kAtom + k * 2048, kAtom, 1024, 1);
      wgmma_ss_n64<1, 1>(reinterpret_cast<float(&)[32]>(acc[0][0]), da, db);
    }
    wgmma_commit();
    wgmma_wait_all();
    fence_acc<64>(acc);
    flush_acc<W, 8>(acc, dst, 64 * mb + 16 * (warp & 3), 64 * nb);
  }
}
#endif

template <int W, int ROWS, int WARPS>
__device__ __forceinline__ void wgrad(const DwTarget& dst, uint32_t h, uint32_t g) {
#if defined(MGDL_WGMMA)
  if constexpr (W >= 64) {
    wgrad_wgmma<W, ROWS, WARPS>(dst, h, g);
    return;
  }
#endif
  wgrad_mma<W, ROWS, WARPS>(dst, h, g);
}

}  // namespace mgdl

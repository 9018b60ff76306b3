// A kernel's view of its dynamic shared memory (regions of SmemPlan) and the block-wide
// loading of the parameters into it.
#pragma once
#include "mma.cuh"
#include "plan.h"

namespace mgdl {

template <int W>
struct Shared {
  uint8_t* base;  // 1024-byte aligned, as the swizzled layouts need
  SmemPlan plan;

  __device__ uint32_t weight_u32(int slot) const {
    return smem_u32(base) + plan.weights + uint32_t(slot) * W * W * 2u;
  }
  __device__ uint8_t* stage_ptr(int slot) const {
    return base + plan.stage + uint32_t(slot) * uint32_t(plan.rows) * W * 2u;
  }
  __device__ uint32_t stage_u32(int slot) const { return smem_u32(stage_ptr(slot)); }
  __device__ float* small() const { return reinterpret_cast<float*>(base + plan.small); }
  __device__ float* slots() const { return reinterpret_cast<float*>(base + plan.slots); }
  __device__ float* loss() const { return reinterpret_cast<float*>(base + plan.loss); }
  __device__ float* dw(const Dims& s, int layer) const {
    return reinterpret_cast<float*>(base + plan.dw +
                                    popcount_below(plan.dw_smem_mask, layer) * dw_smem_bytes(s));
  }
  // This warp's prefetched row inputs of buffer `parity` (see row_floats).
  __device__ float* row_in(const Dims& s, int parity) const {
    const int warp = threadIdx.x >> 5;
    return reinterpret_cast<float*>(base + plan.row_in) +
           (parity * plan.warps + warp) * row_floats(s);
  }
};

template <int W>
__device__ __forceinline__ Shared<W> carve(uint8_t* raw, const SmemPlan& plan) {
  const uint32_t pad = (1024u - (smem_u32(raw) & 1023u)) & 1023u;
  return Shared<W>{raw + pad, plan};
}

// Tensor-core weights as bf16 [out][in] (swizzled), everything else fp32 in the small region.
template <int W>
__device__ void load_params(const Shared<W>& sh, const float* params, const Dims& s) {
  const int first = first_mma_layer(s);
  for (int i = first; i < s.l; ++i) {
    const float* src = params + weight_offset(s, i);
    uint8_t* dst = sh.base + sh.plan.weights + uint32_t(i - first) * W * W * 2u;
    for (int idx = threadIdx.x; idx < W * W / 2; idx += blockDim.x) {
      // Two consecutive inputs k, k + 1 of output n share one 32-bit word.
      const int n = idx % W, k = 2 * (idx / W);
      const uint32_t v = pack_bf16(__ldg(src + k * W + n), __ldg(src + (k + 1) * W + n));
      *reinterpret_cast<uint32_t*>(dst + swz<W>(n, k, W)) = v;
    }
  }
  float* small = sh.small();
  for (int e = threadIdx.x; e < small_floats(s); e += blockDim.x)
    small[e] = __ldg(params + small_to_flat(s, e));
}

// Training only: zero the shared dW accumulators, the per-warp gradient slots and loss sums.
template <int W>
__device__ void zero_accumulators(const Shared<W>& sh, const Dims& s) {
  float* dw = reinterpret_cast<float*>(sh.base + sh.plan.dw);
  const int dw_count = int(sh.plan.small - sh.plan.dw) / 4;
  for (int e = threadIdx.x; e < dw_count; e += blockDim.x) dw[e] = 0.0f;
  const int slot_count = sh.plan.warps * (small_floats(s) + 1);
  float* slots = sh.slots();
  for (int e = threadIdx.x; e < slot_count; e += blockDim.x) slots[e] = 0.0f;
}

}  // namespace mgdl

// The forward pass of a warp's 16 rows, shared by the forward and the training kernels.
#pragma once
#include "layers.cuh"
#include "rows.cuh"
#include "smem.cuh"

namespace mgdl {

// Leaves h_L (fp32, after the ReLU) of the warp's rows in acc and the inputs of a small-input
// first layer in xs. With `stage`, writes the bf16 input h_i of every tensor-core layer i to
// its staging tile for the weight gradient (x itself is staged whenever D == W).
template <int W>
__device__ __forceinline__ void forward_rows(float (&acc)[W / 8][4], uint32_t (&a)[W / 16][4],
                                             float (&xs)[2][kMaxSmallIn], const Shared<W>& sh,
                                             const void* x, bool x_bf16, int64_t row0,
                                             const Dims& s, bool stage) {
  const int rbase = kWarpRows * (threadIdx.x >> 5);
  const float* small = sh.small();
  if (small_input(s)) {
    load_x_small(xs, x, x_bf16, row0, s);
    input_small<W>(acc, xs, small, s);
  } else {
    load_x_tile<W>(x, x_bf16, row0, s.n, sh.stage_ptr(0), sh.plan.rows, rbase);
    load_a<W>(a, sh.stage_u32(0), sh.plan.rows, rbase);
    acc_bias<W>(acc, small + small_bias(s, 0));
    gemm_fwd<W>(acc, a, sh.weight_u32(0));
  }
  const int first = first_mma_layer(s);
  for (int i = 1; i < s.l; ++i) {
    relu<W>(acc);
    pack_a<W>(acc, a);
    if (stage) store_a<W>(a, sh.stage_ptr(i - first), sh.plan.rows, rbase);
    acc_bias<W>(acc, small + small_bias(s, i));
    gemm_fwd<W>(acc, a, sh.weight_u32(i - first));
  }
  relu<W>(acc);
}

}  // namespace mgdl

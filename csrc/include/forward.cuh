// The forward pass of a warp's 16 rows, shared by the forward and the training kernels.
#pragma once
#include "layers.cuh"
#include "rows.cuh"
#include "smem.cuh"

namespace mgdl {

// Leaves h_L (fp32, after the ReLU) of the warp's rows in acc. The inputs are in place: xs for a
// small-input first layer, else the warp's rows of the bf16 x tile in stage slot `first_slot`.
// With `stage` (training), writes the bf16 input h_i of every later tensor-core layer i to its
// staging tile for the weight gradient: slot `first_slot` for the first of them (i == 1 after a
// small-input layer), slot i - first after it. With `a_loaded` the caller has already read the
// x rows into `a` (load_a).
template <int W>
__device__ __forceinline__ void forward_rows(float (&acc)[W / 8][4], uint32_t (&a)[W / 16][4],
                                             const float (&xs)[2][kMaxSmallIn],
                                             const Shared<W>& sh, const Dims& s, int rows,
                                             int first_slot, bool stage, bool a_loaded = false) {
  const int rbase = kWarpRows * (threadIdx.x >> 5);
  const float* small = sh.small();
  if (small_input(s)) {
    input_small<W>(acc, xs, small, s);
  } else {
    if (!a_loaded) load_a<W>(a, sh.stage_u32(first_slot), rows, rbase);
    acc_bias<W>(acc, small + small_bias(s, 0));
    gemm_fwd<W>(acc, a, sh.weight_u32(0));
  }
  const int first = first_mma_layer(s);
  for (int i = 1; i < s.l; ++i) {
    relu<W>(acc);
    pack_a<W>(acc, a);
    if (stage) store_a<W>(a, sh.stage_ptr(i == first ? first_slot : i - first), rows, rbase);
    acc_bias<W>(acc, small + small_bias(s, i));
    gemm_fwd<W>(acc, a, sh.weight_u32(i - first));
  }
  relu<W>(acc);
}

}  // namespace mgdl

// Cross-block reduction of the training step's per-block partials. Every thread sums one
// parameter over the block rows in row order, so the gradient is deterministic for a given
// grid; the loss is summed by one warp in a fixed order.
#include "args.h"
#include "common.cuh"
#include "ops.h"
#include "runtime.h"

namespace mgdl {

__global__ void reduce_partials_kernel(const ReduceArgs a) {
  const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i < a.p) {
    // Four independent sums keep several loads in flight; their order is fixed.
    float s[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int b = 0;
    for (; b + 4 <= a.blocks; b += 4)
#pragma unroll
      for (int k = 0; k < 4; ++k) s[k] += a.partial[(b + k) * a.pitch + i];
    for (; b < a.blocks; ++b) s[0] += a.partial[b * a.pitch + i];
    a.grad[i] = (s[0] + s[1]) + (s[2] + s[3]);
  }
  if (a.loss_partial && blockIdx.x == 0 && threadIdx.x < 32) {
    float v = 0.0f;
    for (int b = threadIdx.x; b < a.blocks; b += 32) v += a.loss_partial[b];
#pragma unroll
    for (int m = 16; m >= 1; m >>= 1) v += __shfl_xor_sync(0xffffffffu, v, m);
    if (threadIdx.x == 0) *a.loss = v * a.loss_scale;
  }
}

void launch_reduce(const ReduceArgs& args, cudaStream_t stream) {
  constexpr int kThreads = 256;
  const int64_t grid = (args.p + kThreads - 1) / kThreads;
  reduce_partials_kernel<<<static_cast<unsigned>(grid), kThreads, 0, stream>>>(args);
  check_launch("reduce_partials_kernel launch");
}

}  // namespace mgdl

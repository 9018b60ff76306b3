// The fused training step's launch and its fixed-order reduction. The kernel is in
// include/train_kernel.cuh; each width's instantiations are a translation unit of their own
// (block_train_w*.cu), so a parallel build compiles them at once.
#include "common.cuh"
#include "ops.h"
#include "runtime.h"

namespace mgdl {

const void* train_kernel(int w, int warps) {
  if (!train_instantiated(w, warps)) return nullptr;
  switch (w) {
    case 32: return train_kernel_w32(warps);
    case 64: return train_kernel_w64(warps);
    case 128: return train_kernel_w128(warps);
    case 256: return train_kernel_w256(warps);
  }
  return nullptr;
}

void launch_block_train(const KernelPlan& plan, TrainArgs a, float* workspace, float* grad,
                        float* loss, cudaStream_t stream) {
  use_device(plan.device);
  const int blocks = plan_grid(plan, a.dims.n);
  a.plan = plan.smem;
  a.partial = workspace;
  a.partial_pitch = plan.pitch;
  a.loss_partial = a.target ? workspace + int64_t(blocks) * plan.pitch : nullptr;
  void* params[] = {&a};
  check_cuda(cudaLaunchKernel(plan.kernel, dim3(blocks), dim3(plan.threads), params,
                              plan.smem.total, stream),
             "block_train_kernel launch");
  const ReduceArgs r{workspace, plan.pitch, blocks, num_params(a.dims), grad,
                     a.loss_partial, loss, 0.5f * a.inv_count};
  launch_reduce(r, stream);
}

}  // namespace mgdl

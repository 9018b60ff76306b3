// Host entry points of the CUDA core: raw device pointers, sizes and a stream; no torch.
// A grade makes one KernelPlan per kernel when it binds; every launch then takes the plan, its
// pointers, the row count and a stream, and plans nothing. Functions throw CudaError on a CUDA
// failure and std::invalid_argument on sizes the kernels do not serve.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "args.h"

namespace mgdl {

// One kernel's launch plan for a bound grade, made once by make_plan.
struct KernelPlan {
  int device;
  bool train;
  Dims dims;         // n: the most rows a launch may have
  SmemPlan smem;     // tile, warps and shared-memory regions
  const void* kernel;
  std::string name;  // the instantiation, e.g. "block_train_kernel<128, 8>"
  int threads;
  int capacity;      // blocks resident on the device at once: SMs x blocks per SM
  int64_t pitch;     // training: floats per block row of the workspace
  int64_t workspace_floats;
};

// The plan of the forward (train == false) or training kernel for `dims` on `device`: the
// shared-memory plan within what a block may use there, the kernel and its dynamic
// shared-memory attribute (raised when this plan needs more), the resident grid, the workspace.
// `warps` forces a tile of that many warps (0: the planner's choice).
KernelPlan make_plan(int device, const Dims& dims, bool train, int warps);

// The shared-memory plan make_plan would choose on `device`, without making it.
SmemPlan device_smem_plan(int device, const Dims& dims, bool train, int warps);

// Blocks a launch of n rows uses: one per tile, at most the resident capacity.
int plan_grid(const KernelPlan& plan, int64_t n);

// The kernel instantiations (nullptr when (w, warps) is not instantiated).
const void* fwd_kernel(int w);
const void* train_kernel(int w, int warps);
// The training kernel of one width and warp count (nullptr if not instantiated), one
// translation unit per width (csrc/block_train_w*.cu).
const void* train_kernel_w32(int warps);
const void* train_kernel_w64(int warps);
const void* train_kernel_w128(int warps);
const void* train_kernel_w256(int warps);

// out (and features) of a block for x (args.dims.n <= plan.dims.n rows).
void launch_block_fwd(const KernelPlan& plan, FwdArgs args, cudaStream_t stream);

// The fused step: the kernel writes per-block partials into `workspace` (plan.workspace_floats),
// then one reduction writes grad [P] and, for the MSE step (args.target set), loss.
void launch_block_train(const KernelPlan& plan, TrainArgs args, float* workspace, float* grad,
                        float* loss, cudaStream_t stream);

// grad = sum of the workspace's block rows (fixed order); loss from the per-block loss sums.
void launch_reduce(const ReduceArgs& args, cudaStream_t stream);

void launch_adam(int device, const AdamArgs& args, cudaStream_t stream);
void launch_gd(int device, float* params, const float* grad, int64_t n, float lr,
               cudaStream_t stream);

}  // namespace mgdl

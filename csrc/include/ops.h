// Host entry points of the CUDA core: raw device pointers, sizes and a stream; no torch.
// Every function makes `device` current first and throws CudaError on a CUDA failure and
// std::invalid_argument on sizes the kernels do not serve.
#pragma once
#include <cuda_runtime.h>

#include <utility>

#include "args.h"

namespace mgdl {

// The shared-memory plan the kernels use on `device` (warps == 0: does not fit).
SmemPlan device_plan(int device, const Dims& dims, bool train);

// out (and features) of a block for x; fills args.plan.
void launch_block_fwd(int device, FwdArgs args, cudaStream_t stream);

// (blocks, pitch): the training step needs a workspace of blocks * pitch + blocks floats.
std::pair<int, int64_t> train_workspace(int device, const Dims& dims);

// The fused step: the kernel writes per-block partials into `workspace`, then one reduction
// writes grad [P] and, for the MSE step (args.target set), loss (a single float).
void launch_block_train(int device, TrainArgs args, float* workspace, float* grad, float* loss,
                        cudaStream_t stream);

// grad = sum of the workspace's block rows (fixed order); loss from the per-block loss sums.
void launch_reduce(const ReduceArgs& args, cudaStream_t stream);

void launch_adam(int device, const AdamArgs& args, cudaStream_t stream);
void launch_gd(int device, float* params, const float* grad, int64_t n, float lr,
               cudaStream_t stream);

}  // namespace mgdl

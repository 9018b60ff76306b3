// POD arguments of the kernels: raw device pointers and sizes, no torch, no pybind11.
#pragma once
#include <cstdint>

#include "plan.h"

namespace mgdl {

// Block forward: out [N, C] fp32 and, when features != nullptr, the last hidden layer [N, W].
struct FwdArgs {
  Dims dims;
  SmemPlan plan;
  const void* x;        // [N, D] fp32 or bf16
  bool x_bf16;
  const float* params;  // flat [P]
  float* out;           // [N, C]
  void* features;       // [N, W] or nullptr
  bool features_bf16;
};

// Fused training step: forward, dL/dout (0.5 * MSE against `target`, or the given `grad_out`),
// backward, and the block's fp32 sums of dL/dparams in row blockIdx.x of `partial`.
struct TrainArgs {
  Dims dims;
  SmemPlan plan;
  const void* x;           // [N, D] fp32 or bf16
  bool x_bf16;
  const float* params;     // flat [P]
  const float* target;     // [N, C] for the MSE step, else nullptr
  const float* grad_out;   // [N, C] given dL/dout, else nullptr
  float inv_count;         // 1 / (N * C): the MSE gradient's scale
  void* grad_x;            // [N, D] dL/dx or nullptr
  bool grad_x_bf16;
  float* partial;          // [blocks, partial_pitch] per-block dL/dparams
  int64_t partial_pitch;
  float* loss_partial;     // [blocks] per-block sums of (out - target)^2 (MSE step only)
};

// Sum of the per-block partials into grad [P]; loss = loss_scale * sum(loss_partial) if given.
struct ReduceArgs {
  const float* partial;
  int64_t pitch;
  int blocks;
  int64_t p;
  float* grad;
  const float* loss_partial;  // nullptr: no loss
  float* loss;
  float loss_scale;
};

// Bias-corrected Adam over a flat vector, as jax.example_libraries.optimizers.adam. The
// step-dependent scalars are read from device memory (float64, advanced on the device by the
// host glue), so a CUDA graph replays the current step's bias corrections.
struct AdamArgs {
  float* params;
  const float* grad;
  float* exp_avg;
  float* exp_avg_sq;
  int64_t n;
  const double* step_size;         // lr / (1 - beta1^step)
  const double* bias_correction2;  // 1 - beta2^step
  float beta1, beta2, eps;
};

}  // namespace mgdl

// Optimizer updates over a grade's flat fp32 parameter vector, one thread per element.
#include "args.h"
#include "common.cuh"
#include "ops.h"
#include "runtime.h"

namespace mgdl {

// Same arithmetic as the torch backend: m <- m + (1 - b1)(g - m), v <- b2 v + (1 - b2) g^2,
// p <- p - step_size * m / (sqrt(v / (1 - b2^t)) + eps).
__global__ void adam_kernel(const AdamArgs a) {
  const float step_size = static_cast<float>(*a.step_size);
  const float bias_correction2 = static_cast<float>(*a.bias_correction2);
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < a.n;
       i += int64_t(gridDim.x) * blockDim.x) {
    const float g = a.grad[i];
    const float m = fmaf(1.0f - a.beta1, g - a.exp_avg[i], a.exp_avg[i]);
    const float v = a.beta2 * a.exp_avg_sq[i] + (1.0f - a.beta2) * g * g;
    a.exp_avg[i] = m;
    a.exp_avg_sq[i] = v;
    a.params[i] -= step_size * (m / (sqrtf(v / bias_correction2) + a.eps));
  }
}

__global__ void gd_kernel(float* params, const float* grad, int64_t n, float lr) {
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * blockDim.x)
    params[i] -= lr * grad[i];
}

static unsigned grid_for(int64_t n, int threads) {
  // A grade has at most a few hundred thousand parameters; 1024 blocks cover them in one pass.
  const int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < 1024 ? (blocks > 0 ? blocks : 1) : 1024);
}

void launch_adam(int device, const AdamArgs& args, cudaStream_t stream) {
  use_device(device);
  adam_kernel<<<grid_for(args.n, 256), 256, 0, stream>>>(args);
  check_launch("adam_kernel launch");
}

void launch_gd(int device, float* params, const float* grad, int64_t n, float lr,
               cudaStream_t stream) {
  use_device(device);
  gd_kernel<<<grid_for(n, 256), 256, 0, stream>>>(params, grad, n, lr);
  check_launch("gd_kernel launch");
}

}  // namespace mgdl

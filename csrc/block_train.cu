// The fused training step: persistent blocks keep the weights in shared memory, run forward,
// loss gradient and backward tile by tile, and accumulate dL/dparams over all their tiles
// (tensor-core dW in shared memory or in the block's L2 row, the small gradients per warp).
// Each block writes one row of fp32 partials; reduce.cu sums the rows in a fixed order.
#include <stdexcept>

#include "backward.cuh"
#include "common.cuh"
#include "ops.h"
#include "runtime.h"

namespace mgdl {

template <int W>
__device__ __forceinline__ void train_tile(const TrainArgs& a, const Shared<W>& sh, int64_t row0,
                                           float* slot, float& loss, bool first_tile) {
  const Dims& s = a.dims;
  float acc[W / 8][4];
  float xs[2][kMaxSmallIn];
  {
    uint32_t frag[W / 16][4];
    forward_rows<W>(acc, frag, xs, sh, a.x, a.x_bf16, row0, s, true);
  }
  float out[2][kMaxOut], dout[2][kMaxOut];
  output_layer<W>(acc, sh.small(), s, out);
  output_grad(a, out, row0, dout, loss);
  head_backward<W>(acc, dout, sh.small(), slot, s);
  cuda_core_grads<W>(acc, s.l - 1, xs, slot, sh.small(), a, row0);
  if (num_mma_layers(s) > 0) {
    uint32_t frag[W / 16][4];
    pack_a<W>(acc, frag);
    store_a<W>(frag, sh.stage_ptr(num_mma_layers(s)), sh.plan.rows, kWarpRows * (threadIdx.x >> 5));
  }
  backward_layers<W>(a, sh, row0, xs, slot, first_tile);
}

// The block's row of partials: per-warp small gradients summed in warp order, the shared dW
// accumulators, and the block's loss.
template <int W>
__device__ __forceinline__ void finish_block(const TrainArgs& a, const Shared<W>& sh, float loss) {
  const Dims& s = a.dims;
#pragma unroll
  for (int m = 16; m >= 1; m >>= 1) loss += __shfl_xor_sync(0xffffffffu, loss, m);
  if (lane_id() == 0) sh.loss()[threadIdx.x >> 5] = loss;
  __syncthreads();
  float* dst = a.partial + blockIdx.x * a.partial_pitch;
  const int count = small_floats(s);
  for (int e = threadIdx.x; e < count; e += blockDim.x) {
    float v = 0.0f;
    for (int w = 0; w < sh.plan.warps; ++w) v += sh.slots()[w * count + e];
    dst[small_to_flat(s, e)] = v;
  }
  for (int i = first_mma_layer(s); i < s.l; ++i) {
    if (!((sh.plan.dw_smem_mask >> i) & 1u)) continue;
    const float* dw = sh.dw(s, i);
    for (int e = threadIdx.x; e < W * W; e += blockDim.x)
      dst[weight_offset(s, i) + e] = dw[(e / W) * (W + kDwPad) + e % W];
  }
  if (a.loss_partial && threadIdx.x == 0) {
    float v = 0.0f;
    for (int w = 0; w < sh.plan.warps; ++w) v += sh.loss()[w];
    a.loss_partial[blockIdx.x] = v;
  }
}

template <int W>
__global__ void __launch_bounds__(256) block_train_kernel(const TrainArgs a) {
  extern __shared__ uint8_t smem_raw[];
  const Shared<W> sh = carve<W>(smem_raw, a.plan);
  load_params<W>(sh, a.params, a.dims);
  zero_accumulators<W>(sh, a.dims);
  async_proxy_fence();
  __syncthreads();
  float* slot = sh.slots() + (threadIdx.x >> 5) * small_floats(a.dims);
  float loss = 0.0f;
  const int64_t tiles = (a.dims.n + a.plan.rows - 1) / a.plan.rows;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t row0 = tile * a.plan.rows + kWarpRows * (threadIdx.x >> 5);
    train_tile<W>(a, sh, row0, slot, loss, tile == blockIdx.x);
    // The next tile overwrites the staging tiles that other warps may still be reading.
    __syncthreads();
  }
  finish_block<W>(a, sh, loss);
}

template <int W>
static int train_grid(const SmemPlan& plan, const Dims& dims, int device) {
  const void* kernel = reinterpret_cast<const void*>(&block_train_kernel<W>);
  const int64_t tiles = (dims.n + plan.rows - 1) / plan.rows;
  return persistent_grid(kernel, 32 * plan.warps, plan.total, tiles, device);
}

static int grid_for(const SmemPlan& plan, const Dims& dims, int device) {
  switch (dims.w) {
    case 32: return train_grid<32>(plan, dims, device);
    case 64: return train_grid<64>(plan, dims, device);
    case 128: return train_grid<128>(plan, dims, device);
    default: return train_grid<256>(plan, dims, device);
  }
}

std::pair<int, int64_t> train_workspace(int device, const Dims& dims) {
  use_device(device);
  const SmemPlan plan = device_plan(device, dims, true);
  // Rows padded to 128 bytes so every block's row starts aligned.
  const int64_t pitch = (num_params(dims) + 31) / 32 * 32;
  return {grid_for(plan, dims, device), pitch};
}

void launch_block_train(int device, TrainArgs args, float* workspace, float* grad, float* loss,
                        cudaStream_t stream) {
  const auto [blocks, pitch] = train_workspace(device, args.dims);
  args.plan = device_plan(device, args.dims, true);
  args.partial = workspace;
  args.partial_pitch = pitch;
  args.loss_partial = args.target ? workspace + blocks * pitch : nullptr;
  const int threads = 32 * args.plan.warps;
  switch (args.dims.w) {
    case 32: block_train_kernel<32><<<blocks, threads, args.plan.total, stream>>>(args); break;
    case 64: block_train_kernel<64><<<blocks, threads, args.plan.total, stream>>>(args); break;
    case 128: block_train_kernel<128><<<blocks, threads, args.plan.total, stream>>>(args); break;
    default: block_train_kernel<256><<<blocks, threads, args.plan.total, stream>>>(args); break;
  }
  check_launch("block_train_kernel launch");
  const ReduceArgs r{workspace, pitch, blocks, num_params(args.dims), grad,
                     args.loss_partial, loss, 0.5f * args.inv_count};
  launch_reduce(r, stream);
}

}  // namespace mgdl

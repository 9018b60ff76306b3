// Block forward: persistent blocks keep the weights in shared memory and stream row tiles;
// each warp carries its 16 rows through every layer in registers.
#include <stdexcept>

#include "args.h"
#include "common.cuh"
#include "forward.cuh"
#include "ops.h"
#include "runtime.h"

namespace mgdl {

template <int W>
__global__ void __launch_bounds__(256) block_fwd_kernel(const FwdArgs a) {
  extern __shared__ uint8_t smem_raw[];
  const Shared<W> sh = carve<W>(smem_raw, a.plan);
  const Dims& s = a.dims;
  load_params<W>(sh, a.params, s);
  async_proxy_fence();
  __syncthreads();
  const int64_t tiles = (s.n + a.plan.rows - 1) / a.plan.rows;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t row0 = tile * a.plan.rows + kWarpRows * (threadIdx.x >> 5);
    float acc[W / 8][4];
    uint32_t frag[W / 16][4];
    float xs[2][kMaxSmallIn];
    forward_rows<W>(acc, frag, xs, sh, a.x, a.x_bf16, row0, s, false);
    if (a.features) store_rows<W>(acc, a.features, a.features_bf16, row0, s.n);
    float out[2][kMaxOut];
    output_layer<W>(acc, sh.small(), s, out);
    store_small_rows(out, a.out, false, s.c, row0, s.n);
  }
}

template <int W>
static void launch(const FwdArgs& a, int device, cudaStream_t stream) {
  const void* kernel = reinterpret_cast<const void*>(&block_fwd_kernel<W>);
  const int threads = 32 * a.plan.warps;
  const int64_t tiles = (a.dims.n + a.plan.rows - 1) / a.plan.rows;
  const int grid = persistent_grid(kernel, threads, a.plan.total, tiles, device);
  block_fwd_kernel<W><<<grid, threads, a.plan.total, stream>>>(a);
  check_launch("block_fwd_kernel launch");
}

void launch_block_fwd(int device, FwdArgs args, cudaStream_t stream) {
  use_device(device);
  args.plan = device_plan(device, args.dims, false);
  switch (args.dims.w) {
    case 32: return launch<32>(args, device, stream);
    case 64: return launch<64>(args, device, stream);
    case 128: return launch<128>(args, device, stream);
    case 256: return launch<256>(args, device, stream);
  }
}

}  // namespace mgdl

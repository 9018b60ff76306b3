// Block forward: persistent blocks keep the weights in shared memory and stream row tiles;
// each warp carries its 16 rows through every layer in registers, with no block barrier per
// tile. With bf16 features (D == W) a warp's x slot is free once its rows are in registers, so it
// takes the next tile's rows (cp.async) while this tile computes: the forward moves 256 B of x
// (and 256 B of features out) per 65 KFLOP row at W = 128, below the bf16 ridge, so keeping the
// next load in flight is what it needs. One block per SM (164 registers at W = 128): a 128-
// register cap for a second block costs spills, and the prefetch already overlaps the loads.
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
  const int rbase = kWarpRows * (threadIdx.x >> 5), rows = a.plan.rows;
  const int64_t tiles = (s.n + rows - 1) / rows;
  // At W = 256 the products need every register: no prefetch addresses to keep live.
  const bool prefetch = W <= 128 && !small_input(s) && a.x_bf16;
  const auto* xb = static_cast<const __nv_bfloat16*>(a.x);
  if (prefetch) copy_x_tile<W>(xb, blockIdx.x * rows + rbase, s.n, sh.stage_ptr(0), rows, rbase);
  cp_async_commit();
  load_params<W>(sh, a.params, s);
  async_proxy_fence();
  __syncthreads();
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x) {
    const int64_t row0 = tile * rows + rbase;
    float acc[W / 8][4];
    uint32_t frag[W / 16][4];
    float xs[2][kMaxSmallIn];
    if (small_input(s)) {
      load_x_small(xs, a.x, a.x_bf16, row0, s);
    } else if (prefetch) {
      cp_async_wait<0>();
      __syncwarp();
      load_a<W>(frag, sh.stage_u32(0), rows, rbase);
      // The warp's rows are in registers: its slot takes the next tile's rows meanwhile.
      __syncwarp();
      const int64_t next = tile + gridDim.x;
      if (next < tiles) copy_x_tile<W>(xb, next * rows + rbase, s.n, sh.stage_ptr(0), rows, rbase);
      cp_async_commit();
    } else {
      load_x_tile<W>(a.x, a.x_bf16, row0, s.n, sh.stage_ptr(0), rows, rbase);
    }
    forward_rows<W>(acc, frag, xs, sh, s, rows, 0, false, prefetch);
    if (a.features) store_rows<W>(acc, a.features, a.features_bf16, row0, s.n);
    float out[2][kMaxOut];
    output_layer<W>(acc, sh.small(), s, out);
    store_small_rows(out, a.out, false, s.c, row0, s.n);
  }
}

const void* fwd_kernel(int w) {
  switch (w) {
    case 32: return reinterpret_cast<const void*>(&block_fwd_kernel<32>);
    case 64: return reinterpret_cast<const void*>(&block_fwd_kernel<64>);
    case 128: return reinterpret_cast<const void*>(&block_fwd_kernel<128>);
    case 256: return reinterpret_cast<const void*>(&block_fwd_kernel<256>);
  }
  return nullptr;
}

void launch_block_fwd(const KernelPlan& plan, FwdArgs a, cudaStream_t stream) {
  use_device(plan.device);
  a.plan = plan.smem;
  void* params[] = {&a};
  check_cuda(cudaLaunchKernel(plan.kernel, dim3(plan_grid(plan, a.dims.n)), dim3(plan.threads),
                              params, plan.smem.total, stream),
             "block_fwd_kernel launch");
}

}  // namespace mgdl

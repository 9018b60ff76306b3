// The fused training step kernel (instantiated per width in csrc/block_train_w*.cu, launched by
// csrc/block_train.cu): persistent blocks keep the weights in shared memory, run forward,
// loss gradient and backward tile by tile, and accumulate dL/dparams over all their tiles
// (tensor-core dW in shared memory or in the block's L2 row, the small gradients per warp).
// Each block writes one row of fp32 partials; reduce.cu sums the rows in a fixed order.
//
// Pipeline: each warp prefetches its rows of the next tile (cp.async, double buffered: small
// inputs and targets always, the bf16 x tile when the plan alternates the first layer's input
// tile) while the current tile computes (up to W = 128: see kPrefetch). With alternating first
// tiles a tile needs no barrier at its end: the next forward writes only tiles the previous
// weight gradients no longer read, and the one barrier before g is staged also orders the x
// refill.
#pragma once
#include "backward.cuh"
#include "common.cuh"
#include "ops.h"

namespace mgdl {

// Whether a tile's row inputs are copied during the previous tile. At W = 256 the products
// need every register, and the addresses of a copy kept live across a tile spill.
template <int W>
constexpr bool kPrefetch = W <= 128;

// Stage slot of the first tensor-core layer's input (x when D == W) for a tile of `parity`.
template <int W>
__device__ __forceinline__ int first_slot(const Shared<W>& sh, const Dims& s, int parity) {
  return sh.plan.alternate && parity ? num_mma_layers(s) + 1 : 0;
}

// Issues this warp's copies for the tile whose warp rows start at row0 into buffer `parity`:
// fp32 small-input x and the targets (or output gradients) into row_in, and the bf16 x tile when
// D == W and first tiles alternate; zero past N. The caller commits the group.
template <int W, int ROWS>
__device__ __forceinline__ void prefetch_rows(const TrainArgs& a, const Shared<W>& sh,
                                              int64_t row0, int parity) {
  const Dims& s = a.dims;
  const int lane = lane_id();
  const int64_t left = s.n - row0;
  const int valid_rows = left < kWarpRows ? int(left) : kWarpRows;
  float* dst = sh.row_in(s, parity);
  // The fp32 row inputs are two contiguous runs: x [16][xd] (when fp32), then y [16][C].
  const int xd = small_input(s) ? s.d : 0, nx = a.x_bf16 ? 0 : kWarpRows * xd;
  const float* x = static_cast<const float*>(a.x) + row0 * xd;
  const float* y = (a.target ? a.target : a.grad_out) + row0 * s.c;
  constexpr int kMost = kWarpRows * (kMaxSmallIn + kMaxOut);
#pragma unroll
  for (int k = 0; k < (kMost + 31) / 32; ++k) {
    const int e = lane + 32 * k;
    const bool is_x = e < nx;
    const int i = is_x ? e : e - nx;
    const bool valid = i < valid_rows * (is_x ? xd : s.c) && e < nx + kWarpRows * s.c;
    if (e < nx + kWarpRows * s.c)
      cp_async_4(smem_u32(dst + (is_x ? e : kWarpRows * xd + i)),
                 valid ? (is_x ? x : y) + i : a.params, valid);
  }
  // W = 256 plans have no room to alternate.
  if (kPrefetch<W> && xd == 0 && sh.plan.alternate && a.x_bf16)
    copy_x_tile<W>(static_cast<const __nv_bfloat16*>(a.x), row0, s.n,
                   sh.stage_ptr(first_slot(sh, s, parity)), ROWS, kWarpRows * (threadIdx.x >> 5));
}

template <int W, int ROWS, int WARPS>
__device__ __forceinline__ void train_tile(const TrainArgs& a, const Shared<W>& sh, int64_t row0,
                                           int64_t next_row0, int parity, float* slot,
                                           float& loss, bool first_tile) {
  const Dims& s = a.dims;
  const int rbase = kWarpRows * (threadIdx.x >> 5);
  const int fslot = first_slot(sh, s, parity);
  const float* rows_in = sh.row_in(s, parity);
  // This tile's copies, issued during the previous tile (or before the loop); at W = 256, where
  // the products need every register, issued here.
  if constexpr (!kPrefetch<W>) {
    prefetch_rows<W, ROWS>(a, sh, row0, parity);
    cp_async_commit();
  }
  cp_async_wait<0>();
  __syncwarp();
  float xs[2][kMaxSmallIn];
  if (small_input(s)) {
    if (a.x_bf16)
      load_x_small(xs, a.x, true, row0, s);
    else
      load_x_small(xs, rows_in, s);
  } else if (!(kPrefetch<W> && sh.plan.alternate && a.x_bf16)) {
    load_x_tile<W>(a.x, a.x_bf16, row0, s.n, sh.stage_ptr(fslot), ROWS, rbase);
  }
  float acc[W / 8][4];
  {
    uint32_t frag[W / 16][4];
    forward_rows<W>(acc, frag, xs, sh, s, ROWS, fslot, true);
  }
  float out[2][kMaxOut], dout[2][kMaxOut];
  output_layer<W>(acc, sh.small(), s, out);
  output_grad(a, out, rows_in + kWarpRows * (small_input(s) ? s.d : 0), row0, dout, loss);
  head_backward<W>(acc, dout, sh.small(), slot, s);
  cuda_core_grads<W>(acc, s.l - 1, xs, slot, sh.small(), a, row0);
  const bool staged = num_mma_layers(s) > 0;
  // With alternating first tiles the previous tile's weight gradients are the last readers of
  // g and of the x tile refilled next: every warp must be past them. Otherwise the previous
  // tile ended with a barrier; the warp's own row inputs only need its lanes.
  if (staged && sh.plan.alternate)
    __syncthreads();
  else
    __syncwarp();
  if (kPrefetch<W> && next_row0 >= 0) prefetch_rows<W, ROWS>(a, sh, next_row0, parity ^ 1);
  cp_async_commit();
  if (staged) {
    uint32_t frag[W / 16][4];
    pack_a<W>(acc, frag);
    store_a<W>(frag, sh.stage_ptr(num_mma_layers(s)), ROWS, rbase);
  }
  backward_layers<W, ROWS, WARPS>(a, sh, row0, xs, slot, first_tile, fslot);
  // Without alternation the next forward rewrites tiles this tile's weight gradients read.
  if (staged && !sh.plan.alternate) __syncthreads();
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

template <int W, int WARPS>
__global__ void __launch_bounds__(32 * WARPS, 1) block_train_kernel(const TrainArgs a) {
  constexpr int kRows = kWarpRows * WARPS;
  extern __shared__ uint8_t smem_raw[];
  const Shared<W> sh = carve<W>(smem_raw, a.plan);
  const int64_t warp_row = kWarpRows * (threadIdx.x >> 5);
  const int64_t tiles = (a.dims.n + kRows - 1) / kRows;
  // The host launches at most one block per tile, so every block has a first tile.
  if constexpr (kPrefetch<W>) prefetch_rows<W, kRows>(a, sh, blockIdx.x * kRows + warp_row, 0);
  cp_async_commit();
  load_params<W>(sh, a.params, a.dims);
  zero_accumulators<W>(sh, a.dims);
  async_proxy_fence();
  __syncthreads();
  float* slot = sh.slots() + (threadIdx.x >> 5) * small_floats(a.dims);
  float loss = 0.0f;
  int parity = 0;
  for (int64_t tile = blockIdx.x; tile < tiles; tile += gridDim.x, parity ^= 1) {
    const int64_t next = tile + gridDim.x;
    train_tile<W, kRows, WARPS>(a, sh, tile * kRows + warp_row,
                                next < tiles ? next * kRows + warp_row : -1, parity, slot, loss,
                                tile == blockIdx.x);
  }
  finish_block<W>(a, sh, loss);
}

}  // namespace mgdl

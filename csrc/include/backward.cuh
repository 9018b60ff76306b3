// The backward pass of a tile in the training kernel: the loss gradient and output layer on
// CUDA cores, then the tensor-core layers from the last to the first, each one's weight
// gradient over the whole tile (all warps) followed by the input gradient of each warp's rows.
#pragma once
#include "args.h"
#include "forward.cuh"
#include "wgrad.cuh"

namespace mgdl {

// dL/dout of the lane's two rows, zero past N: (out - y) / (N C) for the MSE step (adding
// (out - y)^2 to `loss` once per row and channel), else the given gradient. `y` is this warp's
// prefetched [16][C] targets or output gradients.
__device__ __forceinline__ void output_grad(const TrainArgs& a, const float (&out)[2][kMaxOut],
                                            const float* y, int64_t row0,
                                            float (&dout)[2][kMaxOut], float& loss) {
  const Dims& s = a.dims;
  const int g = lane_id() >> 2, q = lane_id() & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = row0 + g + 8 * h;
#pragma unroll
    for (int c = 0; c < kMaxOut; ++c) {
      float d = 0.0f;
      if (c < s.c && row < s.n) {
        const float v = y[(g + 8 * h) * s.c + c];
        if (a.target) {
          const float diff = out[h][c] - v;
          d = diff * a.inv_count;
          if (q == 0) loss = fmaf(diff, diff, loss);
        } else {
          d = v;
        }
      }
      dout[h][c] = d;
    }
  }
}

// Output layer backward: dW_o, db_o into the warp's slot; acc turns from h_L into
// g = dL/d(pre-activation of the last hidden layer) = (dout W_o^T), zeroed where h_L <= 0
// (a NaN h_L passes its gradient on, as torch's threshold_backward).
template <int W>
__device__ __forceinline__ void head_backward(float (&acc)[W / 8][4],
                                              const float (&dout)[2][kMaxOut], const float* small,
                                              float* slot, const Dims& s) {
  const int q = lane_id() & 3;
#pragma unroll
  for (int c = 0; c < kMaxOut; ++c) {
    if (c >= s.c) break;
    add_weighted_sums<W>(acc, dout[0][c], dout[1][c], slot + small_wo(s) + c, s.c);
    const float total = sum_over_rows(dout[0][c] + dout[1][c]);
    if (lane_id() == 0) slot[small_bo(s) + c] += total;
  }
  const float* wo = small + small_wo(s);
#pragma unroll
  for (int t = 0; t < W / 8; ++t)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int col = 8 * t + 2 * q + (e & 1);
      float v = 0.0f;
#pragma unroll
      for (int c = 0; c < kMaxOut; ++c)
        if (c < s.c) v = fmaf(dout[e >> 1][c], wo[col * s.c + c], v);
      acc[t][e] = acc[t][e] <= 0.0f ? 0.0f : v;
    }
}

// From g_i (fp32 in acc): db_i and, for a small-input first layer, dW_0 and dL/dx on CUDA cores.
template <int W>
__device__ __forceinline__ void cuda_core_grads(const float (&acc)[W / 8][4], int i,
                                                const float (&xs)[2][kMaxSmallIn], float* slot,
                                                const float* small, const TrainArgs& a,
                                                int64_t row0) {
  const Dims& s = a.dims;
  add_weighted_sums<W>(acc, 1.0f, 1.0f, slot + small_bias(s, i), 1);
  if (i != 0 || !small_input(s)) return;
  const int q = lane_id() & 3;
  float dx[2][kMaxOut];
#pragma unroll
  for (int d = 0; d < kMaxOut; ++d) {
    float p0 = 0.0f, p1 = 0.0f;
    if (d < s.d) {
      add_weighted_sums<W>(acc, xs[0][d < kMaxSmallIn ? d : 0], xs[1][d < kMaxSmallIn ? d : 0],
                           slot + small_w0(s) + d * W, 1);
#pragma unroll
      for (int t = 0; t < W / 8; ++t) {
        const float* w0 = small + small_w0(s) + d * W;
        const float2 w = *reinterpret_cast<const float2*>(w0 + 8 * t + 2 * q);
        p0 = fmaf(acc[t][0], w.x, fmaf(acc[t][1], w.y, p0));
        p1 = fmaf(acc[t][2], w.x, fmaf(acc[t][3], w.y, p1));
      }
    }
    dx[0][d] = sum_over_quad(p0);
    dx[1][d] = sum_over_quad(p1);
  }
  if (a.grad_x) store_small_rows(dx, a.grad_x, a.grad_x_bf16, s.d, row0, s.n);
}

// Where layer i's dW accumulates: shared memory, or this block's row of the L2 partials.
template <int W>
__device__ __forceinline__ DwTarget dw_target(const TrainArgs& a, const Shared<W>& sh, int i,
                                              bool first_tile) {
  if ((sh.plan.dw_smem_mask >> i) & 1u)
    return DwTarget{smem_u32(sh.dw(a.dims, i)), nullptr, true, false};
  return DwTarget{0u, a.partial + blockIdx.x * a.partial_pitch + weight_offset(a.dims, i), false,
                  first_tile};
}

// Tensor-core layers L-1 .. first. When it starts, g_{L-1} is staged (all warps' rows), the input
// of layer `first` is in stage slot `first_slot` and that of a later layer i in slot i - first.
template <int W, int ROWS, int WARPS>
__device__ void backward_layers(const TrainArgs& a, const Shared<W>& sh, int64_t row0,
                                const float (&xs)[2][kMaxSmallIn], float* slot, bool first_tile,
                                int first_slot) {
  const Dims& s = a.dims;
  const int first = first_mma_layer(s);
  const int rbase = kWarpRows * (threadIdx.x >> 5);
  const int gslot = num_mma_layers(s);
  for (int i = s.l - 1; i >= first; --i) {
    const int hslot = i == first ? first_slot : i - first;
    async_proxy_fence();
    __syncthreads();
    wgrad<W, ROWS, WARPS>(dw_target<W>(a, sh, i, first_tile), sh.stage_u32(hslot),
                          sh.stage_u32(gslot));
    if (i == 0 && !a.grad_x) break;
    float acc[W / 8][4];
    uint32_t frag[W / 16][4];
    load_a<W>(frag, sh.stage_u32(gslot), ROWS, rbase);
    acc_zero<W>(acc);
    gemm_bwd<W>(acc, frag, sh.weight_u32(i - first));
    if (i == 0) {
      store_rows<W>(acc, a.grad_x, a.grad_x_bf16, row0, s.n);
      break;
    }
    relu_mask<W>(acc, sh.stage_ptr(hslot), ROWS, rbase);
    cuda_core_grads<W>(acc, i - 1, xs, slot, sh.small(), a, row0);
    if (i - 1 >= first) {
      pack_a<W>(acc, frag);
      // Every warp must be done reading g_i (the weight gradient above) before it is replaced.
      __syncthreads();
      store_a<W>(frag, sh.stage_ptr(gslot), ROWS, rbase);
    }
  }
}

}  // namespace mgdl

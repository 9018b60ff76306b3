// The CUDA-core parts of a warp's 16 rows: loading inputs, the small-input first layer, the
// output layer (C <= 4), writing rows out, and the column sums that become small gradients.
// A lane holds rows g and g + 8 (g = lane / 4) and columns 8t + 2q, 8t + 2q + 1 (q = lane % 4).
#pragma once
#include "layers.cuh"
#include "plan.h"

namespace mgdl {

__device__ __forceinline__ float load_value(const void* p, bool bf16, int64_t i) {
  return bf16 ? __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i])
              : static_cast<const float*>(p)[i];
}

// x[row][0..D) of the lane's two rows (zero past N).
__device__ __forceinline__ void load_x_small(float (&xs)[2][kMaxSmallIn], const void* x,
                                             bool bf16, int64_t row0, const Dims& s) {
  const int g = lane_id() >> 2;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = row0 + g + 8 * h;
#pragma unroll
    for (int d = 0; d < kMaxSmallIn; ++d)
      xs[h][d] = (d < s.d && row < s.n) ? load_value(x, bf16, row * s.d + d) : 0.0f;
  }
}

// The same from this warp's prefetched rows in shared memory (fp32 [16][D], zero past N).
__device__ __forceinline__ void load_x_small(float (&xs)[2][kMaxSmallIn], const float* rows,
                                             const Dims& s) {
  const int g = lane_id() >> 2;
#pragma unroll
  for (int h = 0; h < 2; ++h)
#pragma unroll
    for (int d = 0; d < kMaxSmallIn; ++d) xs[h][d] = d < s.d ? rows[(g + 8 * h) * s.d + d] : 0.0f;
}

// acc = x W_0 + b_0 for D <= 3 inputs, as fp32 FMAs (W_0 [D, W] and b_0 in `small`).
template <int W>
__device__ __forceinline__ void input_small(float (&acc)[W / 8][4],
                                            const float (&xs)[2][kMaxSmallIn],
                                            const float* small, const Dims& s) {
  const int q = lane_id() & 3;
  acc_bias<W>(acc, small + small_bias(s, 0));
  const float* w0 = small + small_w0(s);
#pragma unroll
  for (int d = 0; d < kMaxSmallIn; ++d) {
    if (d >= s.d) break;
#pragma unroll
    for (int t = 0; t < W / 8; ++t) {
      const float2 w = *reinterpret_cast<const float2*>(w0 + d * W + 8 * t + 2 * q);
      acc[t][0] = fmaf(xs[0][d], w.x, acc[t][0]);
      acc[t][1] = fmaf(xs[0][d], w.y, acc[t][1]);
      acc[t][2] = fmaf(xs[1][d], w.x, acc[t][2]);
      acc[t][3] = fmaf(xs[1][d], w.y, acc[t][3]);
    }
  }
}

// Issues the 16-byte cp.async copies of the warp's 16 rows of bf16 x [N, W] into a staged tile
// (rows rbase..rbase+15), zero past N; the caller commits and waits.
template <int W>
__device__ __forceinline__ void copy_x_tile(const __nv_bfloat16* x, int64_t row0, int64_t n,
                                            uint8_t* tile, int rows, int rbase) {
  constexpr int kChunks = W / 8;
  const int lane = lane_id();
#pragma unroll
  for (int i = 0; i < 16 * kChunks / 32; ++i) {
    const int id = lane + 32 * i, r = id / kChunks, c = id % kChunks;
    const int64_t row = row0 + r;
    const bool valid = row < n;
    const __nv_bfloat16* src = valid ? x + row * W + 8 * c : x;
    cp_async_16(smem_u32(tile + swz<W>(rbase + r, 8 * c, rows)), src, valid);
  }
}

// Copies the warp's 16 rows of x [N, W] into a staged bf16 tile (rows rbase..rbase+15) and waits,
// zero past N: 16-byte cp.async for bf16 inputs, fp32 rows converted through registers.
template <int W>
__device__ __forceinline__ void load_x_tile(const void* x, bool bf16, int64_t row0, int64_t n,
                                            uint8_t* tile, int rows, int rbase) {
  constexpr int kChunks = W / 8;
  const int lane = lane_id();
  // Other lanes may still be reading these rows of the previous tile through ldmatrix.
  __syncwarp();
  if (bf16) {
    copy_x_tile<W>(static_cast<const __nv_bfloat16*>(x), row0, n, tile, rows, rbase);
    cp_async_wait_all();
    __syncwarp();
    return;
  }
#pragma unroll
  for (int i = 0; i < 16 * kChunks / 32; ++i) {
    const int id = lane + 32 * i, r = id / kChunks, c = id % kChunks;
    const int64_t row = row0 + r;
    const bool valid = row < n;
    uint8_t* dst = tile + swz<W>(rbase + r, 8 * c, rows);
    float4 lo = make_float4(0.f, 0.f, 0.f, 0.f), hi = lo;
    if (valid) {
      const float4* src = reinterpret_cast<const float4*>(static_cast<const float*>(x) + row * W);
      lo = src[2 * c];
      hi = src[2 * c + 1];
    }
    *reinterpret_cast<uint4*>(dst) = make_uint4(pack_bf16(lo.x, lo.y), pack_bf16(lo.z, lo.w),
                                                pack_bf16(hi.x, hi.y), pack_bf16(hi.z, hi.w));
  }
  __syncwarp();
}

// out[h][c] = h_L[row h] . W_o[:, c] + b_o[c] for the lane's two rows (every lane of the quad
// ends with the full sums).
template <int W>
__device__ __forceinline__ void output_layer(const float (&hl)[W / 8][4], const float* small,
                                             const Dims& s, float (&out)[2][kMaxOut]) {
  const int q = lane_id() & 3;
  const float* wo = small + small_wo(s);
  const float* bo = small + small_bo(s);
#pragma unroll
  for (int c = 0; c < kMaxOut; ++c) {
    float p0 = 0.0f, p1 = 0.0f;
    if (c < s.c) {
#pragma unroll
      for (int t = 0; t < W / 8; ++t) {
        const int col = 8 * t + 2 * q;
        p0 = fmaf(hl[t][0], wo[col * s.c + c], fmaf(hl[t][1], wo[(col + 1) * s.c + c], p0));
        p1 = fmaf(hl[t][2], wo[col * s.c + c], fmaf(hl[t][3], wo[(col + 1) * s.c + c], p1));
      }
    }
    out[0][c] = c < s.c ? sum_over_quad(p0) + bo[c] : 0.0f;
    out[1][c] = c < s.c ? sum_over_quad(p1) + bo[c] : 0.0f;
  }
}

// v[k] for k = q; selects among registers without a run-time index into the array.
__device__ __forceinline__ float pick(const float (&v)[kMaxOut], int k) {
  return k == 0 ? v[0] : k == 1 ? v[1] : k == 2 ? v[2] : v[3];
}

// Lane q of each quad writes column q (< cols) of its two rows of a [N, cols] fp32 or bf16 array.
__device__ __forceinline__ void store_small_rows(const float (&v)[2][kMaxOut], void* dst,
                                                 bool bf16, int cols, int64_t row0, int64_t n) {
  const int g = lane_id() >> 2, q = lane_id() & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = row0 + g + 8 * h;
    if (q >= cols || row >= n) continue;
    const float value = pick(v[h], q);
    if (bf16)
      static_cast<__nv_bfloat16*>(dst)[row * cols + q] = __float2bfloat16(value);
    else
      static_cast<float*>(dst)[row * cols + q] = value;
  }
}

// Writes the C fragments of the warp's rows to a [N, W] array (fp32 or bf16), rows < N.
template <int W>
__device__ __forceinline__ void store_rows(const float (&acc)[W / 8][4], void* dst, bool bf16,
                                           int64_t row0, int64_t n) {
  const int g = lane_id() >> 2, q = lane_id() & 3;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int64_t row = row0 + g + 8 * h;
    if (row >= n) continue;
#pragma unroll
    for (int t = 0; t < W / 8; ++t) {
      const int64_t i = row * W + 8 * t + 2 * q;
      if (bf16)
        reinterpret_cast<uint32_t*>(dst)[i / 2] = pack_bf16(acc[t][2 * h], acc[t][2 * h + 1]);
      else
        reinterpret_cast<float2*>(dst)[i / 2] = make_float2(acc[t][2 * h], acc[t][2 * h + 1]);
    }
  }
}

// One butterfly step of add_column_sums: entries i and i + Half become one entry summed with
// the partner lane (lane ^ mask), which keeps the other half.
template <int Half, int N>
__device__ __forceinline__ void halve_sums(float (&a)[N], bool upper, int mask) {
#pragma unroll
  for (int i = 0; i < Half; ++i) {
    float lo = a[i], hi = a[i + Half];
    // Two registers, not a select between two array slots (which the compiler turns into a
    // run-time index into local memory).
    asm("" : "+f"(lo), "+f"(hi));
    a[i] = (upper ? hi : lo) + __shfl_xor_sync(0xffffffffu, upper ? lo : hi, mask);
  }
}

// slot[stride * col] += sum over the warp's 16 rows of column col, where v[t][e] is this
// lane's sum of its two rows in column 8t + 2q + e. The 8 lanes sharing q halve their values at
// each of three butterfly steps (lane ^ 4, ^ 8, ^ 16): a lane keeps one half, adds its partner's
// copy of it and hands over the other half. That is 7W / 32 shuffles instead of 3W / 4 for a
// shuffle tree per value, and every lane ends with W / 32 distinct full sums that it alone adds
// to the slot (one writer per entry, a fixed order: deterministic). Columns go in chunks of at
// most 128 (the same shuffle count) so that W = 256 keeps only 32 extra values live.
template <int W>
__device__ __forceinline__ void add_column_sums(const float (&v)[W / 8][2], float* slot,
                                                int stride) {
  constexpr int kCols = W < 128 ? W : 128, kValues = kCols / 4;
  const int g = lane_id() >> 2, q = lane_id() & 3;
  // Value j = 2t + e of a chunk ends in the lane whose g has bits b0 b1 b2 with
  // j / (kCols / 32) = 4 b0 + 2 b1 + b2.
  const int first = (kCols / 32) * (4 * (g & 1) + 2 * ((g >> 1) & 1) + (g >> 2));
#pragma unroll
  for (int c0 = 0; c0 < W; c0 += kCols) {
    float a[kValues];
#pragma unroll
    for (int j = 0; j < kValues; ++j) a[j] = v[c0 / 8 + j / 2][j % 2];
    halve_sums<kValues / 2>(a, g & 1, 4);
    halve_sums<kValues / 4>(a, (g >> 1) & 1, 8);
    halve_sums<kValues / 8>(a, (g >> 2) & 1, 16);
    // The lane's entries are distinct, so all reads go before the writes.
    float* at[kCols / 32];
    float old[kCols / 32];
#pragma unroll
    for (int i = 0; i < kCols / 32; ++i) {
      const int j = first + i;
      at[i] = slot + stride * (c0 + 8 * (j / 2) + 2 * q + j % 2);
      old[i] = *at[i];
    }
#pragma unroll
    for (int i = 0; i < kCols / 32; ++i) *at[i] = old[i] + a[i];
  }
}

// slot[col] += sum over rows of a[row][col] * b[row] (b = 1 for a bias gradient).
template <int W>
__device__ __forceinline__ void add_weighted_sums(const float (&a)[W / 8][4], float b0, float b1,
                                                  float* slot, int stride) {
  float v[W / 8][2];
#pragma unroll
  for (int t = 0; t < W / 8; ++t) {
    v[t][0] = fmaf(a[t][0], b0, a[t][2] * b1);
    v[t][1] = fmaf(a[t][1], b0, a[t][3] * b1);
  }
  add_column_sums<W>(v, slot, stride);
}

}  // namespace mgdl

// Block sizes, flat-parameter offsets and the shared-memory plan of the fused kernels.
// Plain C++ usable from host code (bindings, launchers) and device code alike.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define MGDL_HD __host__ __device__ __forceinline__
#else
#define MGDL_HD inline
#endif

namespace mgdl {

constexpr int kMaxHidden = 8;
constexpr int kMaxSmallIn = 3;
constexpr int kMaxOut = 4;
// Rows of a tile handled by one warp: the m16 of mma.sync and a quarter of wgmma's m64.
constexpr int kWarpRows = 16;
// Pad of every shared-memory dW row: float2 accesses of 8 rows then touch 8 distinct bank groups.
constexpr int kDwPad = 8;

// N pixels, D input dim, W width, L hidden layers, C output channels.
struct Dims {
  int64_t n;
  int d, w, l, c;
};

// Hidden layer i (0-based) maps h_i -> h_{i+1}; layer L is the output layer.
MGDL_HD int64_t layer_in(const Dims& s, int i) { return i == 0 ? s.d : s.w; }
MGDL_HD int64_t layer_out(const Dims& s, int i) { return i == s.l ? s.c : s.w; }
MGDL_HD int64_t weight_offset(const Dims& s, int i) {
  if (i == 0) return 0;
  const int64_t first = int64_t(s.d) * s.w + s.w, hidden = int64_t(s.w) * s.w + s.w;
  return first + int64_t(i - 1) * hidden;
}
MGDL_HD int64_t bias_offset(const Dims& s, int i) {
  return weight_offset(s, i) + layer_in(s, i) * layer_out(s, i);
}
MGDL_HD int64_t num_params(const Dims& s) { return bias_offset(s, s.l) + s.c; }

// Grade 1 reads D <= 3 coordinates (CUDA-core prologue); later grades read D == W features.
MGDL_HD bool small_input(const Dims& s) { return s.d != s.w; }
// Hidden layers whose weights are W x W run on tensor cores: all but a small-input first layer.
MGDL_HD int first_mma_layer(const Dims& s) { return small_input(s) ? 1 : 0; }
MGDL_HD int num_mma_layers(const Dims& s) { return s.l - first_mma_layer(s); }

// fp32 values kept per block (and per warp, for the gradients): biases of the hidden layers,
// the small-input weights, the output weights and bias, in this order.
MGDL_HD int small_floats(const Dims& s) {
  return s.l * s.w + (small_input(s) ? s.d * s.w : 0) + s.w * s.c + s.c;
}

// nullptr when the kernels serve these sizes, else why not.
inline const char* check_dims(const Dims& s) {
  if (s.n < 1) return "N must be >= 1";
  if (s.w != 32 && s.w != 64 && s.w != 128 && s.w != 256)
    return "width must be 32, 64, 128 or 256";
  if (s.d < 1 || (s.d > kMaxSmallIn && s.d != s.w))
    return "input dim must be 1-3 or equal the width";
  if (s.c < 1 || s.c > kMaxOut) return "output channels must be 1-4";
  if (s.l < 1 || s.l > kMaxHidden) return "hidden layers must be 1-8";
  return nullptr;
}

// Byte offsets of the regions of a kernel's dynamic shared memory (after aligning its base).
struct SmemPlan {
  int warps;               // 4 or 8 warps per block; 0 when nothing fits
  int rows;                // pixels per tile: kWarpRows * warps
  uint32_t dw_smem_mask;   // bit i: layer i's dW accumulates in shared memory, not in L2
  uint32_t weights;        // bf16 W x W matrices of the tensor-core layers (swizzled, [out][in])
  uint32_t stage;          // bf16 rows x W tiles: inputs of tensor-core layers, then the gradient
  uint32_t dw;             // fp32 W x (W + kDwPad) accumulators of the layers in dw_smem_mask
  uint32_t small;          // fp32 biases, small-input weights, output layer
  uint32_t slots;          // fp32 per-warp gradient sums of the small values (training)
  uint32_t loss;           // fp32 per-warp loss sums (training)
  uint32_t total;          // bytes to request, including the slack for aligning the base
};

MGDL_HD uint32_t align_up(uint32_t v, uint32_t a) { return (v + a - 1) / a * a; }
MGDL_HD uint32_t dw_smem_bytes(const Dims& s) { return uint32_t(s.w) * (s.w + kDwPad) * 4u; }

MGDL_HD int stage_buffers(const Dims& s, bool train) {
  if (!train) return small_input(s) ? 0 : 1;
  return num_mma_layers(s) + (num_mma_layers(s) > 0 ? 1 : 0);
}

MGDL_HD uint32_t popcount_below(uint32_t mask, int i) {
  uint32_t count = 0;
  for (int b = 0; b < i; ++b) count += (mask >> b) & 1u;
  return count;
}

MGDL_HD SmemPlan layout_smem(const Dims& s, bool train, int warps, uint32_t mask) {
  SmemPlan p{};
  p.warps = warps;
  p.rows = kWarpRows * warps;
  p.dw_smem_mask = mask;
  const uint32_t w = uint32_t(s.w);
  p.weights = 0;
  p.stage = align_up(p.weights + uint32_t(num_mma_layers(s)) * w * w * 2u, 1024);
  p.dw = align_up(p.stage + uint32_t(stage_buffers(s, train)) * uint32_t(p.rows) * w * 2u, 16);
  p.small = p.dw + popcount_below(mask, kMaxHidden) * dw_smem_bytes(s);
  const uint32_t small = uint32_t(small_floats(s)) * 4u;
  p.slots = align_up(p.small + small, 16);
  p.loss = p.slots + (train ? uint32_t(warps) * small : 0u);
  // 1024 bytes of slack: the base is aligned at run time for the 128-byte swizzle atoms.
  p.total = align_up(p.loss + (train ? uint32_t(warps) * 4u : 0u), 16) + 1024u;
  return p;
}

// The largest tile that fits `limit` bytes; in training, then as many dW accumulators in shared
// memory as still fit, last layers first. warps == 0 when even the smallest tile does not fit.
MGDL_HD SmemPlan plan_smem(const Dims& s, bool train, uint32_t limit) {
  for (int warps = 8; warps >= 4; warps -= 4) {
    SmemPlan p = layout_smem(s, train, warps, 0);
    if (p.total > limit) continue;
    for (int i = s.l - 1; train && i >= first_mma_layer(s); --i) {
      const SmemPlan q = layout_smem(s, train, warps, p.dw_smem_mask | (1u << i));
      if (q.total <= limit) p = q;
    }
    return p;
  }
  return SmemPlan{};
}

}  // namespace mgdl

namespace mgdl {

// Offsets (in floats) inside the small fp32 region, and the flat index of each of its entries.
MGDL_HD int small_bias(const Dims& s, int i) { return i * s.w; }
MGDL_HD int small_w0(const Dims& s) { return s.l * s.w; }
MGDL_HD int small_wo(const Dims& s) { return s.l * s.w + (small_input(s) ? s.d * s.w : 0); }
MGDL_HD int small_bo(const Dims& s) { return small_wo(s) + s.w * s.c; }

MGDL_HD int64_t small_to_flat(const Dims& s, int e) {
  if (e < small_w0(s)) return bias_offset(s, e / s.w) + e % s.w;
  if (e < small_wo(s)) return weight_offset(s, 0) + (e - small_w0(s));
  if (e < small_bo(s)) return weight_offset(s, s.l) + (e - small_wo(s));
  return bias_offset(s, s.l) + (e - small_bo(s));
}

}  // namespace mgdl

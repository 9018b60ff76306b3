// Block sizes, flat-parameter offsets, the shared-memory plan of the fused kernels and the
// host decisions taken from them. Plain C++ usable from host code (bindings, launchers) and
// device code alike; every function here is pure, so tests replay them on the CPU.
#pragma once
#include <cstdint>

#if defined(__CUDACC__)
#define MGDL_HD __host__ __device__ __forceinline__
#else
#define MGDL_HD inline
#endif

namespace mgdl {

// The widths the kernels are instantiated for (block_fwd_kernel<W>, block_train_kernel<W, P>).
constexpr int kWidths[] = {32, 64, 128, 256};
constexpr int kMaxHidden = 8;
constexpr int kMaxSmallIn = 3;
constexpr int kMaxOut = 4;
// Rows of a tile handled by one warp: the m16 of mma.sync and a quarter of wgmma's m64.
constexpr int kWarpRows = 16;
// Pad of every shared-memory dW row: float2 accesses of 8 rows then touch 8 distinct bank groups.
constexpr int kDwPad = 8;
// A kernel's dynamic shared-memory limit until cudaFuncSetAttribute raises it.
constexpr uint32_t kDefaultDynamicSmem = 48u * 1024u;

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

// fp32 row inputs a warp prefetches per tile in training (cp.async into shared memory, double
// buffered): its 16 rows of small-input x, then their targets (or given output gradients).
MGDL_HD int row_floats(const Dims& s) { return kWarpRows * ((small_input(s) ? s.d : 0) + s.c); }

// nullptr when the kernels serve these sizes, else why not.
inline const char* check_dims(const Dims& s) {
  if (s.n < 1) return "N must be >= 1";
  bool served = false;
  for (int w : kWidths) served = served || s.w == w;
  if (!served) return "width must be 32, 64, 128 or 256";
  if (s.d < 1 || (s.d > kMaxSmallIn && s.d != s.w))
    return "input dim must be 1-3 or equal the width";
  if (s.c < 1 || s.c > kMaxOut) return "output channels must be 1-4";
  if (s.l < 1 || s.l > kMaxHidden) return "hidden layers must be 1-8";
  return nullptr;
}

// Warp counts block_train_kernel<W, WARPS> is instantiated for: 8 warps (two warpgroups, 128
// rows) up to W = 128, 4 warps (one warpgroup, 64 rows) from W = 64, where 8 warps' tiles do not
// fit next to many layers' weights.
MGDL_HD bool train_instantiated(int w, int warps) {
  return (warps == 8 && w <= 128) || (warps == 4 && w >= 64);
}

// Byte offsets of the regions of a kernel's dynamic shared memory (after aligning its base).
struct SmemPlan {
  int warps;              // 4 or 8 warps per block; 0 when nothing fits
  int rows;               // pixels per tile: kWarpRows * warps
  uint32_t dw_smem_mask;  // bit i: layer i's dW accumulates in shared memory, not in L2
  // Training: the first tensor-core layer's input tile (x when D == W) alternates between two
  // slots, so a tile writes one (the bf16 x prefetched) while the previous tile's last weight
  // gradient still reads the other, and tiles need no barrier at their end.
  bool alternate;
  uint32_t weights;       // bf16 W x W matrices of the tensor-core layers (swizzled, [out][in])
  uint32_t stage;         // bf16 rows x W tiles: inputs of tensor-core layers, the gradient, x'
  uint32_t dw;            // fp32 W x (W + kDwPad) accumulators of the layers in dw_smem_mask
  uint32_t small;         // fp32 biases, small-input weights, output layer
  uint32_t slots;         // fp32 per-warp gradient sums of the small values (training)
  uint32_t loss;          // fp32 per-warp loss sums (training)
  uint32_t row_in;        // fp32 [2][warps][row_floats] prefetched row inputs (training)
  uint32_t total;         // bytes to request, including the slack for aligning the base
};

MGDL_HD uint32_t align_up(uint32_t v, uint32_t a) { return (v + a - 1) / a * a; }
MGDL_HD uint32_t dw_smem_bytes(const Dims& s) { return uint32_t(s.w) * (s.w + kDwPad) * 4u; }

// Staged bf16 tiles. Training: h_first .. h_{L-1} (slot 0 is x when D == W), the gradient g,
// and when alternating the second h_first tile. Forward: x when D == W.
MGDL_HD int stage_buffers(const Dims& s, bool train, bool alternate) {
  if (!train) return small_input(s) ? 0 : 1;
  return num_mma_layers(s) + (num_mma_layers(s) > 0 ? 1 : 0) + (alternate ? 1 : 0);
}

MGDL_HD uint32_t popcount_below(uint32_t mask, int i) {
  uint32_t count = 0;
  for (int b = 0; b < i; ++b) count += (mask >> b) & 1u;
  return count;
}

MGDL_HD SmemPlan layout_smem(const Dims& s, bool train, int warps, uint32_t mask,
                             bool alternate) {
  SmemPlan p{};
  p.warps = warps;
  p.rows = kWarpRows * warps;
  p.dw_smem_mask = mask;
  p.alternate = alternate;
  const uint32_t w = uint32_t(s.w);
  p.weights = 0;
  p.stage = align_up(p.weights + uint32_t(num_mma_layers(s)) * w * w * 2u, 1024);
  const uint32_t staged = uint32_t(stage_buffers(s, train, alternate)) * uint32_t(p.rows) * w * 2u;
  p.dw = align_up(p.stage + staged, 16);
  p.small = p.dw + popcount_below(mask, kMaxHidden) * dw_smem_bytes(s);
  const uint32_t small = uint32_t(small_floats(s)) * 4u;
  p.slots = align_up(p.small + small, 16);
  p.loss = p.slots + (train ? uint32_t(warps) * small : 0u);
  p.row_in = align_up(p.loss + (train ? uint32_t(warps) * 4u : 0u), 16);
  const uint32_t row_in = train ? 2u * uint32_t(warps) * uint32_t(row_floats(s)) * 4u : 0u;
  // 1024 bytes of slack: the base is aligned at run time for the 128-byte swizzle atoms.
  p.total = align_up(p.row_in + row_in, 16) + 1024u;
  return p;
}

// L2 traffic a training tile adds per row: one 4-byte red.add per dW element of each
// tensor-core layer whose dW is not accumulated in shared memory.
MGDL_HD uint64_t l2_bytes_per_tile(const Dims& s, const SmemPlan& p) {
  uint64_t bytes = 0;
  for (int i = first_mma_layer(s); i < s.l; ++i)
    if (!((p.dw_smem_mask >> i) & 1u)) bytes += uint64_t(s.w) * s.w * 4u;
  return bytes;
}

// Whether plan a moves fewer L2 bytes per row than plan b (cross-multiplied: exact).
MGDL_HD bool fewer_l2_bytes(const Dims& s, const SmemPlan& a, const SmemPlan& b) {
  return l2_bytes_per_tile(s, a) * uint64_t(b.rows) < l2_bytes_per_tile(s, b) * uint64_t(a.rows);
}

// The plan of a kernel within `limit` bytes (warps == 0: none fits). Forward: the largest tile.
// Training, among the instantiated warp counts (only `force_warps` if nonzero), with and without
// alternating first tiles, each with as many dW accumulators in shared memory as still fit
// (last layers first): the fewest L2 bytes per row, then more warps (two warpgroups overlap
// each other's memory and CUDA-core work), then alternation. A 4-warp tile halves the rows an
// L2 flush is spread over, so one more layer's dW in shared memory at 4 warps moves as many L2
// bytes per row as 8 warps without it ([128,128,128,1]: 1 KiB/row either way) and adds 2 KiB/row
// of shared-memory flushes: the 8-warp plan wins.
MGDL_HD SmemPlan plan_smem(const Dims& s, bool train, uint32_t limit, int force_warps = 0) {
  SmemPlan best{};
  for (int warps = 8; warps >= 4; warps -= 4) {
    if (force_warps != 0 && warps != force_warps) continue;
    if (train && !train_instantiated(s.w, warps)) continue;
    for (int alt = (train && num_mma_layers(s) > 0) ? 1 : 0; alt >= 0; --alt) {
      SmemPlan p = layout_smem(s, train, warps, 0, alt != 0);
      if (p.total > limit) continue;
      for (int i = s.l - 1; train && i >= first_mma_layer(s); --i) {
        const SmemPlan q = layout_smem(s, train, warps, p.dw_smem_mask | (1u << i), alt != 0);
        if (q.total <= limit) p = q;
      }
      if (!train) return p;
      if (best.warps == 0 || fewer_l2_bytes(s, p, best)) best = p;
    }
  }
  return best;
}

// The dynamic shared-memory attribute to set on a kernel when a plan needing `needed` bytes is
// made and the kernel's attribute on that device is `current` (kDefaultDynamicSmem if never
// set); 0: no call. The attribute belongs to the kernel, not to a plan, so it only grows: a
// smaller plan must never lower it under a larger plan of the same kernel still in use.
MGDL_HD uint32_t smem_attribute_update(uint32_t current, uint32_t needed) {
  return needed > current ? needed : 0u;
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

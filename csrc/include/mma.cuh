// Warp-level tensor-core primitives (sm_80+): bf16 packing, swizzled shared-memory addressing,
// ldmatrix, mma.sync m16n8k16, cp.async and shuffles.
//
// Fragment layouts (PTX ISA, mma.m16n8k16 with .bf16), lane = 4 * g + q:
//   A (16 x 16, 4 regs of bf16x2): reg0 (row g, cols 2q..2q+1), reg1 (row g+8, same cols),
//                                  reg2 (row g, cols 8+2q..), reg3 (row g+8, cols 8+2q..)
//   B (16 x 8, 2 regs):            reg0 (rows 2q..2q+1, col g), reg1 (rows 8+2q.., col g)
//   C (16 x 8, 4 floats):          c0,c1 (row g, cols 2q, 2q+1), c2,c3 (row g+8, same cols)
// Two adjacent C tiles (cols 16k..16k+15) hold exactly the A fragment of k-tile k, which is why
// a layer's output feeds the next layer without leaving registers. wgmma's register A operand
// and its accumulator use the same per-warp layouts (warp i of a warpgroup: rows 16i..16i+15).
#pragma once
#include <cuda_bf16.h>

#include <cstdint>

namespace mgdl {

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<const uint32_t*>(&v);
}

__device__ __forceinline__ float2 unpack_bf16(uint32_t bits) {
  return __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&bits));
}

__device__ __forceinline__ uint32_t smem_u32(const void* ptr) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(ptr));
}

// Byte offset of element (r, k) of a bf16 matrix with `rows` rows and W contiguous columns, in
// the canonical wgmma layouts: 64-column atoms of 128-byte rows (W >= 64, 128B swizzle) stored
// one after another, or one 32-column atom of 64-byte rows (W == 32, 64B swizzle). The 16-byte
// chunk index is XORed with the row (bits 7-9 of the offset into bits 4-6), which also makes
// ldmatrix's eight 16-byte row reads conflict-free. Needs a 1024-byte aligned base.
template <int W>
__device__ __forceinline__ uint32_t swz(int r, int k, int rows) {
  if constexpr (W >= 64) {
    const uint32_t chunk = ((k >> 3) & 7) ^ (r & 7);
    return uint32_t(k >> 6) * uint32_t(rows) * 128u + uint32_t(r) * 128u + (chunk << 4) +
           uint32_t(k & 7) * 2u;
  } else {
    const uint32_t chunk = ((k >> 3) & 3) ^ ((r >> 1) & 3);
    return uint32_t(r) * 64u + (chunk << 4) + uint32_t(k & 7) * 2u;
  }
}

// Four 8x8 b16 matrices; lane l gives the address of row (l % 8) of matrix l / 8.
// The memory clobber keeps the compiler from moving the read above the stores it depends on.
__device__ __forceinline__ void ldsm_x4(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

__device__ __forceinline__ void ldsm_x4_t(uint32_t addr, uint32_t (&r)[4]) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr)
               : "memory");
}

// d += a * b for one m16n8k16 tile, fp32 accumulate.
__device__ __forceinline__ void mma_bf16(float (&d)[4], const uint32_t (&a)[4], uint32_t b0,
                                         uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, "
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// 16 bytes global -> shared without passing through registers; zero-filled when !valid.
__device__ __forceinline__ void cp_async_16(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}

// 4 bytes global -> shared (through L1); zero-filled when !valid.
__device__ __forceinline__ void cp_async_4(uint32_t dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 4 : 0)
               : "memory");
}

__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.wait_all;\n" ::: "memory");
}

// Closes this thread's current group of cp.async copies (an empty group when none were issued).
__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most `Pending` of this thread's committed groups are still in flight.
template <int Pending>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(Pending) : "memory");
}

// Sum over the 8 lanes that share q = lane % 4 (the 8 row pairs of a C fragment).
__device__ __forceinline__ float sum_over_rows(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 4);
  v += __shfl_xor_sync(0xffffffffu, v, 8);
  v += __shfl_xor_sync(0xffffffffu, v, 16);
  return v;
}

// Sum over the 4 lanes of a quad (the columns a lane holds of one row).
__device__ __forceinline__ float sum_over_quad(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  v += __shfl_xor_sync(0xffffffffu, v, 2);
  return v;
}

}  // namespace mgdl

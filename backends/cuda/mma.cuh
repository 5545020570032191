// Device helpers shared by the tensor-core attention kernels (attention_mma.cu, the forward, and
// attention_mma_backward.cu): thin wrappers around the PTX instructions they are written with
// (mma.sync m16n8k16, ldmatrix, cp.async, ex2.approx), 16-bit conversions, the swizzled layout of
// a tile in shared memory, and the dropout test on a raw philox word. Included by nvcc (sm_80 or
// later), and by g++ for the CPU test tests/cuda_emulation/, where FOVEA_CUDA_EMULATION swaps the
// PTX wrappers for the SIMT emulator's.
//
// --- The fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16", "ldmatrix") ------------
//
// For lane l of a warp: g = l / 4 (groupID), t = l % 4 (threadID_in_group). A quad is the four
// lanes with the same g.
//
// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32  D[16×8] = A[16×16]·B[16×8] + C.
// The PTX ISA numbers the ELEMENTS a lane holds (a0..a7, b0..b3, c0..c3); two 16-bit elements
// share a 32-bit register, the lower-numbered one in bits 0..15. Per register:
//   A: A0 = (a0, a1) = A[g][2t, 2t+1]      A1 = (a2, a3) = A[g+8][2t, 2t+1]
//      A2 = (a4, a5) = A[g][2t+8, 2t+9]    A3 = (a6, a7) = A[g+8][2t+8, 2t+9]
//   B: B0 = (b0, b1) = B[2t, 2t+1][g]      B1 = (b2, b3) = B[2t+8, 2t+9][g]   (two rows k, column g)
//   C, D (f32, one each): c0, c1 = C[g][2t, 2t+1]   c2, c3 = C[g+8][2t, 2t+1]
//
// ldmatrix.sync.aligned.m8n8.x4[.trans].shared.b16  r0..r3, [address]: four 8×8 matrices of
//   16-bit elements; lane l gives the address of row l % 8 of matrix l / 8 (16 contiguous bytes).
//   Without .trans, r_i of lane l = M_i[g][2t, 2t+1]   (row g, columns 2t and 2t+1);
//   with .trans,    r_i of lane l = M_i[2t, 2t+1][g]   (rows 2t and 2t+1 of column g).
//
// Two consequences the kernels lean on. C's layout is A's split in two: the accumulators of two
// adjacent n8 tiles, rounded to 16 bits in pairs, are the A operand of a k16 step (c0, c1 of tile
// 2s → A0, c2, c3 → A1, those of tile 2s+1 → A2, A3), so a product's result feeds the next
// product without shared memory. And one ldmatrix.x4 reads a 16×16 block of a row-major tile in
// either of two matrix orders, picked by where lane l points (r = l % 8):
//   "columns last"  row r + 8·((l/8) % 2), chunk l / 16: matrices (rows 0-7, cols 0-7), (8-15, 0-7),
//                   (0-7, 8-15), (8-15, 8-15): A0..A3 of an A operand without .trans, or B0, B1
//                   of two n8 tiles (cols 0-7, 8-15) of a B operand with .trans;
//   "rows last"     row r + 8·(l / 16), chunk (l/8) % 2: matrices (0-7, 0-7), (0-7, 8-15),
//                   (8-15, 0-7), (8-15, 8-15): B0, B1 of two n8 tiles (rows 0-7, 8-15) of a B
//                   operand without .trans, or A0..A3 of an A operand with .trans.
//
// --- Shared memory layout ------------------------------------------------------------------------
//
// A tile row of kRow 16-bit elements (kRow = 64 or 128) is kRow/8 chunks of 16 bytes; chunk c of
// row r is stored at chunk position c ^ (r % 8) of that row (XOR swizzle). ldmatrix reads, per
// group of 8 lanes, the same logical chunk of 8 consecutive rows; rows are 128 or 256 bytes long,
// so without the swizzle all 8 would sit in the same 4 banks (an 8-way conflict), with it they sit
// at 8 distinct offsets modulo 128 bytes, i.e. in 8 distinct groups of 4 banks. The XOR only flips
// the low 3 bits, so a chunk stays in its row's aligned 128-byte segment; cp.async's 16-byte
// writes of 8 consecutive chunks of a row likewise cover all 32 banks once.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "fovea/core/philox.h"

namespace fovea::cuda_backend::mma_device {

// --- PTX wrappers --------------------------------------------------------------------------
//
// Under FOVEA_CUDA_EMULATION (g++, the CPU test in tests/cuda_emulation/) the same functions come
// from the SIMT emulator instead of inline PTX: the emulated build includes the emulator's
// stand-ins (tests/cuda_emulation/ptx.h) before the kernel file, so this backend header never
// includes a test header.

#ifndef FOVEA_CUDA_EMULATION

__device__ inline std::uint32_t shared_address(const void* pointer) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(pointer));
}

// 16 bytes from global `source` to shared `destination`, asynchronously; of them the first
// `bytes` (16 or 0) are read, the rest are zeros.
__device__ inline void copy_async(std::uint32_t destination, const void* source, int bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(destination),
               "l"(__cvta_generic_to_global(source)), "r"(bytes)
               : "memory");
}
// Closes the group of this thread's copies issued since the last commit (possibly empty).
__device__ inline void commit_copies() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
// Waits until at most kPending of this thread's committed groups are still in flight.
template <int kPending>
__device__ inline void wait_copies() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(kPending) : "memory");
}

// ldmatrix .x4: four 8×8 matrices, lane l naming row l % 8 of matrix l / 8 (layouts at the top).
__device__ inline void load_matrices(std::uint32_t (&r)[4], std::uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address)
               : "memory");
}
__device__ inline void load_matrices_transposed(std::uint32_t (&r)[4], std::uint32_t address) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(address)
               : "memory");
}

// c += A·B for one m16n8k16 tile: a = A0..A3, (b0, b1) = (B0, B1) as at the top of the file.
template <typename Half>
__device__ inline void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  if constexpr (std::is_same_v<Half, __nv_bfloat16>) {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
        "{%0, %1, %2, %3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

// 2^x with the hardware's approximation (about 2 ulp; results below 2^-126 flush to 0, and
// 2^-∞ = 0). exp2f without --use_fast_math adds a few instructions per call for subnormal
// results, which softmax weights that small do not need.
__device__ inline float exp2_approx(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}
#endif  // !FOVEA_CUDA_EMULATION

// --- 16-bit conversions ----------------------------------------------------------------------

// (low, high) rounded to nearest into one register, `low` in bits 0..15: an mma operand pair.
template <typename Half>
__device__ inline std::uint32_t pack(float low, float high) {
  std::uint32_t bits;
  if constexpr (std::is_same_v<Half, __nv_bfloat16>) {
    const __nv_bfloat162 pair = __floats2bfloat162_rn(low, high);
    memcpy(&bits, &pair, sizeof bits);
  } else {
    const __half2 pair = __floats2half2_rn(low, high);
    memcpy(&bits, &pair, sizeof bits);
  }
  return bits;
}

template <typename Half>
__device__ inline Half to_half(float x) {
  if constexpr (std::is_same_v<Half, __nv_bfloat16>)
    return __float2bfloat16_rn(x);
  else
    return __float2half_rn(x);
}

__device__ inline float to_float(__nv_bfloat16 x) { return __bfloat162float(x); }
__device__ inline float to_float(__half x) { return __half2float(x); }

// --- Tiles in shared memory -----------------------------------------------------------------

// Byte offset of 16-byte chunk `chunk` of row `row` in a tile of kRow-element rows (swizzled).
template <int kRow>
__device__ inline std::uint32_t chunk_offset(std::uint32_t row, std::uint32_t chunk) {
  static_assert(kRow == 64 || kRow == 128, "rows of 8 or 16 chunks: the swizzle's XOR stays inside a row");
  return (row * (kRow / 8) + (chunk ^ (row % 8))) * 16;
}

// tile ← rows [0, count) of source (kHead contiguous elements each), zeros in rows [count,
// kRows), copied by the kThreads threads of the block. Thread x copies chunk x % chunks of rows
// x / chunks, x / chunks + rows_per_pass, ...: consecutive threads read consecutive 16 bytes of a
// row, so global reads coalesce, and as rows_per_pass is a multiple of 8 the swizzle is the same
// in every pass: one shared and one global address per thread, the passes being constant offsets
// from them. (Offsets computed per pass in 64 bits would stay live across a whole key loop, some
// 40 registers.)
template <int kRows, int kHead, int kThreads, typename Half>
__device__ inline void load_tile(std::uint32_t tile, const Half* source, int count) {
  constexpr int chunks = kHead / 8, rows_per_pass = kThreads / chunks;
  static_assert(rows_per_pass % 8 == 0 && kRows % rows_per_pass == 0, "one swizzle phase per thread");
  const int row = static_cast<int>(threadIdx.x) / chunks, chunk = static_cast<int>(threadIdx.x) % chunks;
  const std::uint32_t destination = tile + chunk_offset<kHead>(row, chunk);
#pragma unroll
  for (int pass = 0; pass < kRows / rows_per_pass; ++pass) {
    const int r = row + pass * rows_per_pass;
    const bool inside = r < count;  // outside, the (unread) source is any valid address
    copy_async(destination + pass * rows_per_pass * kHead * 2, inside ? source + r * kHead + chunk * 8 : source,
               inside ? 16 : 0);
  }
}

// --- Dropout -----------------------------------------------------------------------------------

// w.v[lane] without indexing the array with a run-time value (which would place it in local memory).
__device__ inline std::uint32_t word(const philox::Block& w, unsigned lane) {
  return lane == 0 ? w.v[0] : lane == 1 ? w.v[1] : lane == 2 ? w.v[2] : w.v[3];
}

// Whether the probability drawn with raw philox word w is kept: float(u) >= float(p), the test of
// attention.cuh's dropout_factor<float> (u has 24 bits, so (w >> 8)·2^-24 in f32 equals
// float(philox::to_unit(w))).
__device__ inline bool kept(std::uint32_t w, float p) { return static_cast<float>(w >> 8) * 0x1p-24f >= p; }

}  // namespace fovea::cuda_backend::mma_device

// The engine's own matrix product (gemm_kernels.cpp), in the style of BLIS and OpenBLAS: both
// operands are packed into cache-sized blocks laid out in the order a register-blocked
// micro-kernel reads them, and the micro-kernel keeps an MR × NR tile of C in vector registers.
//
//   c[m, n] = Σ_k op(a)[m, k] · op(b)[k, n]      (+ c[m, n] when accumulate)
//
// row-major, with leading dims lda, ldb, ldc; op(a)[m, k] is a[k·lda + m] when transpose_a,
// a[m·lda + k] otherwise, and likewise for b. Compiled once per instruction set (isa_namespace.h),
// with the micro-kernel's vectors and tile sized for it.
//
// Why not OpenBLAS: the engine's kernels run on its own pool, whose threads sleep when idle, while
// OpenBLAS's threads spin for a while after each call and fight the pool's (matmul_kernels.cpp).
// Running OpenBLAS single-threaded per pool thread made every thread pack the shared operand for
// itself, and lost half the speed at mid sizes (bench/matmul). Here the threads pack each block of
// the shared operand together, once, then split the tiles of C.
#pragma once

#include <cstdint>

#include "fovea/backends/cpu/isa_namespace.h"
#include "fovea/core/thread_pool.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

template <typename T>
struct GemmOperands {
  bool transpose_a = false, transpose_b = false;
  std::int64_t m = 0, n = 0, k = 0;
  const T* a = nullptr;
  std::int64_t lda = 0;
  const T* b = nullptr;
  std::int64_t ldb = 0;
  T* c = nullptr;
  std::int64_t ldc = 0;
  bool accumulate = false;  // c += op(a)·op(b) instead of c = op(a)·op(b)
};

// On the calling thread alone (a task of a batch that the caller spreads over the pool).
template <typename T>
void gemm(const GemmOperands<T>& g);

// Spread over the pool when the product is big enough to be worth it.
template <typename T>
void gemm(ThreadPool& pool, const GemmOperands<T>& g);

// The micro-kernel's tile for this instruction set and type, and the depth of a K block, for
// tests and benches.
struct GemmTile {
  int mr, nr, kc;
};
template <typename T>
GemmTile gemm_tile();

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE

// CPU kernel for matmul: OpenBLAS's gemm, one call per matrix of the broadcast batch.
//
//   y[β, m, n] = Σ_k a[β_a, m, k] · b[β_b, k, n]
//
// where β runs over the output's batch dims and β_a, β_b are β with an operand's broadcast
// dims (size 1, or missing) pinned to 0. With transpose_a the stored matrix of a is [K, M]
// and a[β, m, k] reads it at [k, m]; likewise for b. The transposes go to BLAS as flags: an
// operand is never copied.
//
// When b is one matrix shared by the whole batch and a is not transposed, a's batch of
// [M, K] matrices is one [batch·M, K] matrix, and the batch is a single gemm: bigger calls
// let BLAS block and thread better than many small ones.
//
// Threads: OpenBLAS runs single-threaded (the backend sets it once), and the parallelism comes
// from the engine's own pool. OpenBLAS's threads busy-wait for a while after every call
// (2^28 cycles by default); on a machine with as many cores as threads they would spin against
// the pool's threads running the elementwise kernels in between, a fight that cost a third of
// a Transformer step on 2 cores. The pool's threads sleep when idle. So:
//   - a batch of at least as many matrices as threads (attention's per-head products): whole
//     gemms side by side, one matrix per task;
//   - otherwise each gemm is cut into one block of C's rows (or columns, when it has more of
//     them) per thread, each block one single-threaded BLAS call.
#include <cblas.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "fovea/backends/cpu/kernels.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

namespace {

// c[m, n] = Σ_k op(a)[m, k] · op(b)[k, n], row-major, with leading dims lda, ldb, ldc.
template <typename T>
void gemm(bool transpose_a, bool transpose_b, blasint m, blasint n, blasint k, const T* a, blasint lda, const T* b,
          blasint ldb, T* c, blasint ldc) {
  const CBLAS_TRANSPOSE ta = transpose_a ? CblasTrans : CblasNoTrans;
  const CBLAS_TRANSPOSE tb = transpose_b ? CblasTrans : CblasNoTrans;
  if constexpr (std::is_same_v<T, float>)
    cblas_sgemm(CblasRowMajor, ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
  else
    cblas_dgemm(CblasRowMajor, ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c, ldc);
}

// Fewest multiply-adds (M·N·K) worth cutting one gemm across threads.
constexpr std::int64_t kParallelGemm = std::int64_t{1} << 18;

// c = op(a)·op(b) as above, spread over the pool: C cut into `pool.size()` blocks of rows (or
// of columns, when N > M), each a BLAS call on its own thread. Row block [r0, r1) reads rows
// r0.. of op(a), which is a + r0·lda when a is stored [M, K] and a + r0 when stored [K, M];
// column blocks likewise offset b.
template <typename T>
void parallel_gemm(ThreadPool& pool, bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k,
                   const T* a, blasint lda, const T* b, blasint ldb, T* c, blasint ldc) {
  const std::int64_t threads = pool.size();
  if (threads == 1 || m * n * k < kParallelGemm || std::max(m, n) < 2 * threads) {
    gemm<T>(transpose_a, transpose_b, static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k), a, lda,
            b, ldb, c, ldc);
    return;
  }
  const bool by_rows = m >= n;
  const std::int64_t extent = by_rows ? m : n;
  pool.parallel_for(threads, 1, [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t piece = first; piece < last; ++piece) {
      const std::int64_t begin = extent * piece / threads, end = extent * (piece + 1) / threads;
      if (begin == end) continue;
      if (by_rows) {
        gemm<T>(transpose_a, transpose_b, static_cast<blasint>(end - begin), static_cast<blasint>(n),
                static_cast<blasint>(k), a + (transpose_a ? begin : begin * lda), lda, b, ldb, c + begin * ldc, ldc);
      } else {
        gemm<T>(transpose_a, transpose_b, static_cast<blasint>(m), static_cast<blasint>(end - begin),
                static_cast<blasint>(k), a, lda, b + (transpose_b ? begin * ldb : begin), ldb, c + begin, ldc);
      }
    }
  });
}

// Per output batch dim, how far an operand's pointer moves (in elements) for one step
// along it: 0 where the operand broadcasts.
std::vector<std::int64_t> batch_strides(const Shape& operand, int out_batch_rank) {
  const int rank = operand.rank();
  std::vector<std::int64_t> strides(static_cast<std::size_t>(out_batch_rank), 0);
  std::int64_t stride = operand[rank - 2] * operand[rank - 1];
  for (int i = rank - 3; i >= 0; --i) {
    strides[static_cast<std::size_t>(out_batch_rank - (rank - 2) + i)] = operand[i] == 1 ? 0 : stride;
    stride *= operand[i];
  }
  return strides;
}

template <typename T>
void matmul_kernel(const KernelContext& ctx) {
  const TensorArg &A = ctx.in(0), &B = ctx.in(1), &Y = ctx.out();
  const auto [transpose_a, transpose_b] = ctx.params<MatmulParams>();
  const Shape &sa = A.shape(), &sb = B.shape(), &sy = Y.shape();
  const int out_rank = sy.rank(), batch_rank = out_rank - 2;
  const std::int64_t m = sy[out_rank - 2], n = sy[out_rank - 1];
  const std::int64_t k = transpose_a ? sa[sa.rank() - 2] : sa[sa.rank() - 1];
  const T* a = A.as<T>();
  const T* b = B.as<T>();
  T* y = Y.as<T>();

  if (Y.numel() == 0) return;
  if (k == 0) {  // a sum of no products
    std::fill(y, y + Y.numel(), T(0));
    return;
  }
  // Every dim is now >= 1, so are the leading dims BLAS requires to be >= 1.
  constexpr std::int64_t blas_max = std::numeric_limits<blasint>::max();
  if (m > blas_max || n > blas_max || k > blas_max)
    ctx.fail(fmt::format("matrix dims M={} N={} K={} exceed what this BLAS can index ({})", m, n, k, blas_max));
  const auto lda = static_cast<blasint>(transpose_a ? m : k);
  const auto ldb = static_cast<blasint>(transpose_b ? k : n);
  const auto ldc = static_cast<blasint>(n);

  const std::int64_t batch = Y.numel() / (m * n);
  const std::int64_t b_batch = B.numel() / (k * n);
  if (b_batch == 1 && !transpose_a && batch * m <= blas_max) {
    // a's batch, being the output's, is one tall [batch·M, K] matrix.
    parallel_gemm<T>(*ctx.pool, false, transpose_b, batch * m, n, k, a, lda, b, ldb, y, ldc);
    return;
  }

  const std::vector<std::int64_t> stride_a = batch_strides(sa, batch_rank);
  const std::vector<std::int64_t> stride_b = batch_strides(sb, batch_rank);
  // Matrices [first, last) of the batch; matrix i's operands sit at offsets found by
  // walking its output batch index through the operands' broadcast strides.
  auto offsets = [&](std::int64_t i) {
    std::int64_t offset_a = 0, offset_b = 0, rest = i;
    for (int d = batch_rank - 1; d >= 0; --d) {
      const std::int64_t index = rest % sy[d];
      rest /= sy[d];
      offset_a += index * stride_a[static_cast<std::size_t>(d)];
      offset_b += index * stride_b[static_cast<std::size_t>(d)];
    }
    return std::pair{offset_a, offset_b};
  };
  const int threads = ctx.pool->size();
  if (threads > 1 && batch >= threads) {
    ctx.pool->parallel_for(batch, 1, [&](std::int64_t first, std::int64_t last) {
      for (std::int64_t i = first; i < last; ++i) {
        const auto [offset_a, offset_b] = offsets(i);
        gemm<T>(transpose_a, transpose_b, static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k),
                a + offset_a, lda, b + offset_b, ldb, y + i * m * n, ldc);
      }
    });
    return;
  }
  for (std::int64_t i = 0; i < batch; ++i) {
    const auto [offset_a, offset_b] = offsets(i);
    parallel_gemm<T>(*ctx.pool, transpose_a, transpose_b, m, n, k, a + offset_a, lda, b + offset_b, ldb, y + i * m * n,
                     ldc);
  }
}

}  // namespace

void register_matmul_kernels(KernelRegistry& registry) {
  registry.add(ops::matmul, DType::f32, &matmul_kernel<float>);
  registry.add(ops::matmul, DType::f64, &matmul_kernel<double>);
}

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE

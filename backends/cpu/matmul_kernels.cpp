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
// BLAS brings its own threads (the backend sets their number once, to the pool's size), so
// its calls are not wrapped in the pool, with one exception: a batch of many small matrices
// (attention's per-head [T, d] x [d, T]). BLAS threads one small gemm poorly, since waking its
// threads costs about as much as the work, so there the batch is spread over the pool instead:
// whole gemms side by side, BLAS set to one thread for the duration.
#include <cblas.h>

#include <algorithm>
#include <limits>
#include <type_traits>
#include <vector>

#include <fmt/format.h>

#include "fovea/backends/cpu/kernels.h"

namespace fovea::cpu_backend {

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

// Most multiply-adds (M·N·K) of a matrix that counts as small for the rule above.
constexpr std::int64_t kSmallGemm = std::int64_t{1} << 23;

// While alive, OpenBLAS runs every call on the calling thread. Its thread count is global:
// the previous one is restored on exit.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas() : previous_(openblas_get_num_threads()) { openblas_set_num_threads(1); }
  ~SingleThreadedBlas() { openblas_set_num_threads(previous_); }
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int previous_;
};

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
  const bool transpose_a = ctx.attrs().get_bool("transpose_a");
  const bool transpose_b = ctx.attrs().get_bool("transpose_b");
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
    gemm<T>(false, transpose_b, static_cast<blasint>(batch * m), static_cast<blasint>(n), static_cast<blasint>(k), a,
            lda, b, ldb, y, ldc);
    return;
  }

  const std::vector<std::int64_t> stride_a = batch_strides(sa, batch_rank);
  const std::vector<std::int64_t> stride_b = batch_strides(sb, batch_rank);
  // Matrices [first, last) of the batch; matrix i's operands sit at offsets found by
  // walking its output batch index through the operands' broadcast strides.
  auto multiply = [&](std::int64_t first, std::int64_t last) {
    for (std::int64_t i = first; i < last; ++i) {
      std::int64_t offset_a = 0, offset_b = 0, rest = i;
      for (int d = batch_rank - 1; d >= 0; --d) {
        const std::int64_t index = rest % sy[d];
        rest /= sy[d];
        offset_a += index * stride_a[static_cast<std::size_t>(d)];
        offset_b += index * stride_b[static_cast<std::size_t>(d)];
      }
      gemm<T>(transpose_a, transpose_b, static_cast<blasint>(m), static_cast<blasint>(n), static_cast<blasint>(k),
              a + offset_a, lda, b + offset_b, ldb, y + i * m * n, ldc);
    }
  };
  const int threads = ctx.pool->size();
  if (threads > 1 && batch >= threads && m * n * k <= kSmallGemm) {
    const SingleThreadedBlas one_thread;
    ctx.pool->parallel_for(batch, 1, [&](std::int64_t first, std::int64_t last) { multiply(first, last); });
  } else {
    multiply(0, batch);
  }
}

}  // namespace

void register_matmul_kernels(KernelRegistry& registry) {
  registry.add("matmul", DType::f32, &matmul_kernel<float>);
  registry.add("matmul", DType::f64, &matmul_kernel<double>);
}

}  // namespace fovea::cpu_backend

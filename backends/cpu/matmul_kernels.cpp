// CPU kernel for matmul: the engine's own gemm (gemm.h), one product per matrix of the broadcast
// batch.
//
//   y[β, m, n] = Σ_k a[β_a, m, k] · b[β_b, k, n]
//
// where β runs over the output's batch dims and β_a, β_b are β with an operand's broadcast
// dims (size 1, or missing) pinned to 0. With transpose_a the stored matrix of a is [K, M]
// and a[β, m, k] reads it at [k, m]; likewise for b. The transposes are read by the packing: an
// operand is never copied beforehand.
//
// When b is one matrix shared by the whole batch and a is not transposed, a's batch of
// [M, K] matrices is one [batch·M, K] matrix, and the batch is a single gemm, whose B is packed
// once for all of it.
//
// Threads: the pool's (OpenBLAS is not called; its threads would spin between calls against the
// pool's, decision 11 of docs/architecture.md).
//   - a batch of at least as many matrices as threads (attention's per-head products): whole
//     products side by side, one matrix per task, each on one thread; unless the matrices are
//     big and the batch does not divide evenly among the threads;
//   - otherwise each product is spread over the pool by gemm itself, which packs each block of
//     B once, with all threads, and splits the tiles of C.
#include <algorithm>
#include <vector>

#include "fovea/backends/cpu/gemm.h"
#include "fovea/backends/cpu/kernels.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

namespace {

template <typename T>
GemmOperands<T> operands(bool transpose_a, bool transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, const T* a,
                         const T* b, T* c) {
  return GemmOperands<T>{transpose_a, transpose_b, m, n, k, a, transpose_a ? m : k, b, transpose_b ? k : n, c, n};
}

// Matrices at least this big (multiply-adds) are split over the pool one at a time when the batch
// does not divide evenly among the threads; smaller ones go whole to the threads, however uneven.
constexpr std::int64_t kSplitMatrix = std::int64_t{1} << 22;

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
  ThreadPool& pool = *ctx.pool;
  const std::int64_t batch = Y.numel() / (m * n);
  const std::int64_t b_batch = B.numel() / (k * n);
  if (b_batch == 1 && !transpose_a) {
    // a's batch, being the output's, is one tall [batch·M, K] matrix.
    gemm(pool, operands(false, transpose_b, batch * m, n, k, a, b, y));
    return;
  }

  const std::vector<std::int64_t> stride_a = batch_strides(sa, batch_rank);
  const std::vector<std::int64_t> stride_b = batch_strides(sb, batch_rank);
  // Matrix i's operands sit at offsets found by walking its output batch index through the
  // operands' broadcast strides.
  auto matrix = [&](std::int64_t i) {
    std::int64_t offset_a = 0, offset_b = 0, rest = i;
    for (int d = batch_rank - 1; d >= 0; --d) {
      const std::int64_t index = rest % sy[d];
      rest /= sy[d];
      offset_a += index * stride_a[static_cast<std::size_t>(d)];
      offset_b += index * stride_b[static_cast<std::size_t>(d)];
    }
    return operands(transpose_a, transpose_b, m, n, k, a + offset_a, b + offset_b, y + i * m * n);
  };
  const int threads = pool.size();
  const bool whole_matrices = batch >= threads && (batch % threads == 0 || m * n * k < kSplitMatrix);
  if (threads > 1 && whole_matrices) {
    pool.parallel_for(batch, 1, [&](std::int64_t first, std::int64_t last) {
      for (std::int64_t i = first; i < last; ++i) gemm(matrix(i));
    });
    return;
  }
  for (std::int64_t i = 0; i < batch; ++i) gemm(pool, matrix(i));
}

}  // namespace

void register_matmul_kernels(KernelRegistry& registry) {
  registry.add(ops::matmul, DType::f32, &matmul_kernel<float>);
  registry.add(ops::matmul, DType::f64, &matmul_kernel<double>);
}

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE

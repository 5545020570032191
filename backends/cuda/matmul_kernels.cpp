// CUDA kernel for matmul: cuBLAS's gemm.
//
//   y[β, m, n] = Σ_k a[β_a, m, k] · b[β_b, k, n]
//
// with β the output's batch index and β_a, β_b its broadcast into each operand (ops/matmul.h).
//
// cuBLAS is column-major; our matrices are row-major. A row-major [R, C] matrix read as
// column-major is its transpose, so y = a·b is computed as yᵀ = bᵀ·aᵀ: cuBLAS gets b first,
// then a, with m and n swapped, and each operand's own transpose flag (the leading dims are
// the stored row lengths, as on the CPU). Nothing is copied.
//
// The batch takes one of three paths, as on the CPU where it can:
//  - b is one matrix and a is not transposed: a's batch is one [batch·M, K] matrix, one gemm;
//  - each operand has the whole batch or a single matrix: one strided-batched gemm, with
//    stride 0 for the single matrix;
//  - otherwise (a batch broadcast along some dims only, [B,1,M,K] x [H,K,N]): one gemm per
//    output matrix.
//
// f32 products stay in f32 (no TF32) unless CudaBackend::set_allow_tf32(true).
#include <cublas_v2.h>

#include <climits>
#include <type_traits>

#include <fmt/format.h>

#include "fovea/backends/cuda/kernels.h"

namespace fovea::cuda_backend {

namespace {

void check_blas(const KernelContext& ctx, cublasStatus_t status) {
  if (status != CUBLAS_STATUS_SUCCESS) ctx.fail(fmt::format("cuBLAS gemm failed: {}", cublasGetStatusString(status)));
}

// One column-major gemm call per the comment above: C[n, m] = op(B)ᵀ-view · op(A)ᵀ-view.
struct Gemm {
  cublasHandle_t handle;
  cublasOperation_t op_a, op_b;
  int m, n, k, lda, ldb, ldc;
};

template <typename T>
cublasStatus_t strided_batched(const Gemm& g, const T* a, long long stride_a, const T* b, long long stride_b, T* c,
                               long long stride_c, int batch) {
  const T one = 1, zero = 0;
  if constexpr (std::is_same_v<T, float>)
    return cublasSgemmStridedBatched(g.handle, g.op_b, g.op_a, g.n, g.m, g.k, &one, b, g.ldb, stride_b, a, g.lda,
                                     stride_a, &zero, c, g.ldc, stride_c, batch);
  else
    return cublasDgemmStridedBatched(g.handle, g.op_b, g.op_a, g.n, g.m, g.k, &one, b, g.ldb, stride_b, a, g.lda,
                                     stride_a, &zero, c, g.ldc, stride_c, batch);
}

template <typename T>
cublasStatus_t single(const Gemm& g, const T* a, const T* b, T* c) {
  const T one = 1, zero = 0;
  if constexpr (std::is_same_v<T, float>)
    return cublasSgemm(g.handle, g.op_b, g.op_a, g.n, g.m, g.k, &one, b, g.ldb, a, g.lda, &zero, c, g.ldc);
  else
    return cublasDgemm(g.handle, g.op_b, g.op_a, g.n, g.m, g.k, &one, b, g.ldb, a, g.lda, &zero, c, g.ldc);
}

// Per output batch dim, how far an operand's pointer moves for one step along it (0 where
// the operand broadcasts), as on the CPU.
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
  if (Y.numel() == 0) return;
  CudaBackend& gpu = CudaBackend::of(ctx);
  const auto [transpose_a, transpose_b] = ctx.params<MatmulParams>();
  const Shape &sa = A.shape(), &sb = B.shape(), &sy = Y.shape();
  const int out_rank = sy.rank(), batch_rank = out_rank - 2;
  const std::int64_t m = sy[out_rank - 2], n = sy[out_rank - 1];
  const std::int64_t k = transpose_a ? sa[sa.rank() - 2] : sa[sa.rank() - 1];
  if (k == 0) {  // a sum of no products
    check(ctx, cudaMemsetAsync(Y.data, 0, Y.type.nbytes(), static_cast<cudaStream_t>(gpu.stream())), "cudaMemsetAsync");
    return;
  }
  if (m > INT_MAX || n > INT_MAX || k > INT_MAX)
    ctx.fail(fmt::format("matrix dims M={} N={} K={} exceed what cuBLAS can index ({})", m, n, k, INT_MAX));
  Gemm g{static_cast<cublasHandle_t>(gpu.blas()),
         transpose_a ? CUBLAS_OP_T : CUBLAS_OP_N,
         transpose_b ? CUBLAS_OP_T : CUBLAS_OP_N,
         static_cast<int>(m),
         static_cast<int>(n),
         static_cast<int>(k),
         static_cast<int>(transpose_a ? m : k),
         static_cast<int>(transpose_b ? k : n),
         static_cast<int>(n)};
  const T* a = A.as<T>();
  const T* b = B.as<T>();
  T* y = Y.as<T>();

  const std::int64_t batch = Y.numel() / (m * n);
  const std::int64_t a_batch = A.numel() / (m * k), b_batch = B.numel() / (k * n);
  if (b_batch == 1 && !transpose_a && batch * m <= INT_MAX) {
    // a's batch, being the output's, is one tall [batch·M, K] matrix.
    g.m = static_cast<int>(batch * m);
    return check_blas(ctx, single<T>(g, a, b, y));
  }
  if ((a_batch == 1 || a_batch == batch) && (b_batch == 1 || b_batch == batch) && batch <= INT_MAX) {
    // An operand with a batch of the output's size has the output's batch dims (each of its
    // dims is 1 or the output's, and their product is the output's): its matrices follow the
    // output's in order.
    return check_blas(ctx, strided_batched<T>(g, a, a_batch == 1 ? 0 : m * k, b, b_batch == 1 ? 0 : k * n, y, m * n,
                                              static_cast<int>(batch)));
  }
  const std::vector<std::int64_t> stride_a = batch_strides(sa, batch_rank);
  const std::vector<std::int64_t> stride_b = batch_strides(sb, batch_rank);
  for (std::int64_t i = 0; i < batch; ++i) {
    std::int64_t offset_a = 0, offset_b = 0, rest = i;
    for (int d = batch_rank - 1; d >= 0; --d) {
      const std::int64_t index = rest % sy[d];
      rest /= sy[d];
      offset_a += index * stride_a[static_cast<std::size_t>(d)];
      offset_b += index * stride_b[static_cast<std::size_t>(d)];
    }
    check_blas(ctx, single<T>(g, a + offset_a, b + offset_b, y + i * m * n));
  }
}

}  // namespace

void register_matmul_kernels(KernelRegistry& r) {
  r.add(ops::matmul, DType::f32, &matmul_kernel<float>);
  r.add(ops::matmul, DType::f64, &matmul_kernel<double>);
}

}  // namespace fovea::cuda_backend

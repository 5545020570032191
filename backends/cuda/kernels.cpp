// Helpers shared by the CUDA backend's kernel families (kernels.h).
#include "fovea/backends/cuda/kernels.h"

#include <cstddef>

#include <fmt/format.h>

namespace fovea::cuda_backend {

void check(const KernelContext& ctx, cudaError_t status, std::string_view what) {
  if (status != cudaSuccess) ctx.fail(fmt::format("CUDA: {} failed: {}", what, cudaGetErrorString(status)));
}

void check_launch(const KernelContext& ctx, bool launched, std::string_view what) {
  if (!launched)
    ctx.fail(fmt::format("internal error: the CUDA launcher for {} has no kernel for these element types", what));
  check(ctx, cudaGetLastError(), fmt::format("launching the {} kernel", what));
}

unsigned long long* verdict_words(const KernelContext& ctx) {
  static_assert(sizeof(Verdict) == 2 * sizeof(unsigned long long) && offsetof(Verdict, position) == 0 &&
                offsetof(Verdict, detail) == sizeof(unsigned long long));
  if (!ctx.verdict) ctx.fail("internal error: a checking CUDA kernel was run without a verdict");
  return reinterpret_cast<unsigned long long*>(ctx.verdict);
}

void copy_on_device(const KernelContext& ctx, CudaBackend& gpu, void* y, const void* x, std::size_t bytes) {
  if (y == x || bytes == 0) return;
  check(ctx, cudaMemcpyAsync(y, x, bytes, cudaMemcpyDeviceToDevice, static_cast<cudaStream_t>(gpu.stream())),
        "cudaMemcpyAsync on the device");
}

std::vector<std::int64_t> row_major_strides(const std::vector<std::int64_t>& dims) {
  std::vector<std::int64_t> strides(dims.size(), 1);
  for (std::size_t i = dims.size(); i-- > 1;) strides[i - 1] = strides[i] * dims[i];
  return strides;
}

std::vector<std::int64_t> broadcast_strides(const Shape& in, const Shape& out) {
  std::vector<std::int64_t> strides(static_cast<std::size_t>(out.rank()), 0);
  std::int64_t stride = 1;
  for (int i = in.rank() - 1; i >= 0; --i) {
    strides[static_cast<std::size_t>(out.rank() - in.rank() + i)] = in[i] == 1 ? 0 : stride;
    stride *= in[i];
  }
  return strides;
}

}  // namespace fovea::cuda_backend

// CUDA elementwise kernels over the functors shared with the CPU backend.
#include <cuda_runtime.h>

#include "fovea/backends/cuda/launch.h"
#include "fovea/ops/functors.h"

namespace fovea::cuda_backend {

// y[i] = F(x[i]), grid-stride loop.
template <typename T, typename F> __global__ void unary_kernel(const T* x, T* y, std::int64_t n) {
  const F f{};
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x)
    y[i] = f(x[i]);
}

void launch_exp_f32(const float* x, float* y, std::int64_t n, void* stream) {
  if (n == 0) return;
  const int threads = 256;
  const auto blocks = static_cast<unsigned>(std::min<std::int64_t>((n + threads - 1) / threads, 65535));
  unary_kernel<float, fn::Exp><<<blocks, threads, 0, static_cast<cudaStream_t>(stream)>>>(x, y, n);
}

}  // namespace fovea::cuda_backend

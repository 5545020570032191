// Device-side helpers shared by the .cu files: grid sizes, grid-stride loops, and the offsets
// of a Walk (launch.h). Included by nvcc only.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "fovea/backends/cuda/launch.h"

namespace fovea::cuda_backend {

// Threads per block of the simple one-thread-per-element kernels.
inline constexpr int kThreads = 256;

// Blocks for n > 0 elements, one per thread, capped at 2^16 blocks: the kernels loop with a
// grid stride, so a larger n just gives each thread several elements.
inline unsigned blocks_for(std::int64_t n, int threads = kThreads) {
  const std::int64_t blocks = (n + threads - 1) / threads;
  return static_cast<unsigned>(blocks < (1 << 16) ? blocks : (1 << 16));
}

inline cudaStream_t as_stream(void* stream) { return static_cast<cudaStream_t>(stream); }

// The grid-stride loop: thread t handles elements t, t + T, t + 2T, ... with T the grid's
// thread count.
__device__ inline std::int64_t first_element() {
  return static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
}
__device__ inline std::int64_t grid_stride() { return static_cast<std::int64_t>(gridDim.x) * blockDim.x; }

// offset[k] = Σ_d index_d(i)·walk.strides[k][d], the digits of i taken in base walk.dims from
// the last dim. The loop runs over the fixed kMaxDims so that every array index is a
// constant (no local-memory copy of the walk); a box of one dim needs no division at all.
template <int N>
__device__ inline void walk_offsets(const Walk<N>& walk, std::int64_t i, std::int64_t (&offset)[N]) {
#pragma unroll
  for (int k = 0; k < N; ++k) offset[k] = 0;
  if (walk.rank == 1) {
#pragma unroll
    for (int k = 0; k < N; ++k) offset[k] = i * walk.strides[k][0];
    return;
  }
#pragma unroll
  for (int d = kMaxDims - 1; d >= 0; --d) {
    if (d >= walk.rank) continue;
    const std::int64_t extent = walk.dims[d];
    const std::int64_t index = i % extent;
    i /= extent;
#pragma unroll
    for (int k = 0; k < N; ++k) offset[k] += index * walk.strides[k][d];
  }
}

// Lowers *first to p (the smallest failing position wins, whatever the thread order).
__device__ inline void record_first(unsigned long long* first, std::int64_t p) {
  atomicMin(first, static_cast<unsigned long long>(p));
}

}  // namespace fovea::cuda_backend

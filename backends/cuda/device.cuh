// Device-side helpers shared by the .cu files: grid sizes, grid-stride loops, and the offsets
// of a Walk (launch.h). Included by nvcc only.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstddef>
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

// Blocks for `work` independent pieces of one block each (attention's row tiles, say), capped at
// 2^20: kernels that take more pieces loop over them with a grid stride.
inline unsigned grid_for(std::int64_t work) {
  constexpr std::int64_t max_blocks = 1 << 20;
  return static_cast<unsigned>(work < max_blocks ? work : max_blocks);
}

// Lets `kernel` use `bytes` of dynamic shared memory, more than the default 48 KiB. The attribute
// belongs to a device's context, so it is set once per device: `done`, the caller's static array
// for this kernel, remembers the first kRememberedDevices devices (beyond them, every launch sets
// it again).
inline constexpr int kRememberedDevices = 64;

template <typename Kernel>
void allow_shared_memory(Kernel* kernel, std::size_t bytes, int device, std::atomic<bool> (&done)[kRememberedDevices]) {
  const bool remembered = device >= 0 && device < kRememberedDevices;
  if (remembered && done[device].load(std::memory_order_acquire)) return;
  const cudaError_t status =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(bytes));
  if (remembered && status == cudaSuccess) done[device].store(true, std::memory_order_release);
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

// Calls f(T{}) for f32 and f64 and returns true; false for any other element type. The launch
// functions of the float-only kernels dispatch with it.
template <typename F>
bool with_float_type(Element type, F&& f) {
  switch (type) {
    case Element::f32:
      f(float{});
      return true;
    case Element::f64:
      f(double{});
      return true;
    default:
      return false;
  }
}

}  // namespace fovea::cuda_backend

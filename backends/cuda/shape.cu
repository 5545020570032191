// The CUDA kernel behind the shape ops (ops/shape_ops.h): one strided copy,
//
//   y[y_base + offset_1(i)] = x[x_base + offset_0(i)]   for every i in the walk's box,
//
// which is permute (x's strides permuted), broadcast_to (x's stride 0 along broadcast dims),
// slice (x's stride step·inner along the axis, x_base = start·inner) and each input of concat
// (y's strides those of the output, y_base the input's offset along the axis), once the host
// has written the strides. Elements are moved as 1-, 2-, 4- or 8-byte words, whatever their type.
#include "fovea/backends/cuda/device.cuh"

namespace fovea::cuda_backend {

namespace {

template <typename Word>
__global__ void copy_kernel(const Word* x, std::int64_t x_base, Word* y, std::int64_t y_base, std::int64_t n,
                            const __grid_constant__ Walk<2> walk) {
  for (std::int64_t i = first_element(); i < n; i += grid_stride()) {
    std::int64_t offset[2];
    walk_offsets(walk, i, offset);
    y[y_base + offset[1]] = x[x_base + offset[0]];
  }
}

template <typename Word>
void copy_as(const void* x, std::int64_t x_base, void* y, std::int64_t y_base, std::int64_t n, const Walk<2>& walk,
             cudaStream_t stream) {
  copy_kernel<Word><<<blocks_for(n), kThreads, 0, stream>>>(static_cast<const Word*>(x), x_base, static_cast<Word*>(y),
                                                            y_base, n, walk);
}

}  // namespace

bool launch_copy(int element_size, const void* x, std::int64_t x_base, void* y, std::int64_t y_base, std::int64_t n,
                 const Walk<2>& walk, void* stream) {
  if (n == 0) return true;
  switch (element_size) {
    case 1:
      copy_as<std::uint8_t>(x, x_base, y, y_base, n, walk, as_stream(stream));
      return true;
    case 2:
      copy_as<std::uint16_t>(x, x_base, y, y_base, n, walk, as_stream(stream));
      return true;
    case 4:
      copy_as<std::uint32_t>(x, x_base, y, y_base, n, walk, as_stream(stream));
      return true;
    case 8:
      copy_as<std::uint64_t>(x, x_base, y, y_base, n, walk, as_stream(stream));
      return true;
    default:
      return false;
  }
}

}  // namespace fovea::cuda_backend

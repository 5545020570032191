// Device helpers shared by the two fused attention kernels (attention.cu, the plain one, and
// attention_tiled.cu, the FlashAttention-2-style one): the math wrappers, the causal bounds,
// the mask's batch offset and dropout's keep factor. Included by nvcc only.
#pragma once

#include <cstdint>
#include <limits>

#include "fovea/backends/cuda/device.cuh"
#include "fovea/core/philox.h"

namespace fovea::cuda_backend::attention_device {

template <typename T>
__device__ inline T infinity() {
  return std::numeric_limits<T>::infinity();
}

__device__ inline float exp_of(float x) { return expf(x); }
__device__ inline double exp_of(double x) { return exp(x); }
__device__ inline float log_of(float x) { return logf(x); }
__device__ inline double log_of(double x) { return log(x); }
__device__ inline float fma_of(float a, float b, float c) { return fmaf(a, b, c); }
__device__ inline double fma_of(double a, double b, double c) { return fma(a, b, c); }

// The value subtracted from a row's scores before exponentiating: its max or lse, or +∞ for
// a row with no finite score, so that exp(s - shift) is exactly 0 there instead of NaN.
template <typename T>
__device__ inline T exp_shift(T row_value) {
  return row_value == -infinity<T>() ? infinity<T>() : row_value;
}

__device__ inline std::int64_t clamp(std::int64_t x, std::int64_t low, std::int64_t high) {
  return x < low ? low : (x > high ? high : x);
}

// Query i attends to keys j < key_end(i); key j is seen by queries i >= first_query(j). Both
// grow with their argument, so a tile's bounds come from its last row and its first key.
__device__ inline std::int64_t key_end(const AttentionShape& a, std::int64_t i) {
  return a.causal ? clamp(i + a.tk - a.tq + 1, 0, a.tk) : a.tk;
}
__device__ inline std::int64_t first_query(const AttentionShape& a, std::int64_t j) {
  return a.causal ? clamp(j - (a.tk - a.tq), 0, a.tq) : 0;
}

// Where batch item b's [Tq, Tk] slice of the mask starts (b's digits in base batch_dims).
__device__ inline std::int64_t mask_offset(const AttentionShape& a, std::int64_t b) {
  std::int64_t offset = 0;
#pragma unroll
  for (int dim = kMaxDims - 1; dim >= 0; --dim) {
    if (dim >= a.batch_rank) continue;
    offset += b % a.batch_dims[dim] * a.mask_batch_strides[dim];
    b /= a.batch_dims[dim];
  }
  return offset;
}

// The stream the dropout draws from: the node's, shifted by the step when it has one.
__device__ inline std::uint64_t dropout_stream(const AttentionShape& a) {
  return a.dropout.step ? a.dropout.stream + static_cast<std::uint64_t>(*a.dropout.step) : a.dropout.stream;
}

// Z[i, j] of batch item b: c where T(u) >= T(p), else 0, u the uniform of element
// e = (b·Tq + i)·Tk + j of the probabilities; 1 without dropout.
template <typename T>
__device__ inline T dropout_factor(const AttentionShape& a, std::uint64_t stream, std::int64_t b, std::int64_t i,
                                   std::int64_t j) {
  if (!(a.dropout.p > 0)) return T(1);
  const auto e = static_cast<std::uint64_t>((b * a.tq + i) * a.tk + j);
  const philox::Block w = philox::words(a.dropout.seed, stream, e / 4);
  const T u = static_cast<T>(philox::to_unit(w.v[e % 4]));
  return u >= static_cast<T>(a.dropout.p) ? static_cast<T>(a.dropout.scale) : T(0);
}

}  // namespace fovea::cuda_backend::attention_device

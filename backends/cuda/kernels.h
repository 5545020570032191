// The CUDA backend's kernel families (host side), and what they share: the element type of a
// tensor, the strides of a walk (launch.h), and checks that turn CUDA failures into
// fovea::Error naming the node.
//
// Each *_kernels.cpp here is the host half of one .cu file: it unpacks the KernelContext
// (shapes, attributes, pointers), works out sizes and strides, and calls a launcher.
#pragma once

#include <cuda_runtime.h>

#include <array>
#include <string_view>
#include <vector>

#include "fovea/backends/backend.h"
#include "fovea/backends/cuda/cuda_backend.h"
#include "fovea/backends/cuda/launch.h"
// The OpDefs (ops::matmul, ...) that the kernels are registered under.
#include "fovea/ops/attention.h"
#include "fovea/ops/convolution.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/fused_elementwise.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/matmul.h"
#include "fovea/ops/normalization.h"
#include "fovea/ops/reduce.h"
#include "fovea/ops/shape_ops.h"
#include "fovea/ops/state.h"
#include "fovea/ops/transfer.h"

namespace fovea::cuda_backend {

void register_elementwise_kernels(KernelRegistry& registry);
void register_reduce_kernels(KernelRegistry& registry);
void register_matmul_kernels(KernelRegistry& registry);
void register_shape_kernels(KernelRegistry& registry);
void register_indexing_kernels(KernelRegistry& registry);
void register_creation_kernels(KernelRegistry& registry);
void register_state_kernels(KernelRegistry& registry);
void register_attention_kernels(KernelRegistry& registry);
void register_normalization_kernels(KernelRegistry& registry);
void register_transfer_kernels(KernelRegistry& registry);
void register_convolution_kernels(KernelRegistry& registry);
void register_collective_kernels(KernelRegistry& registry);

// The launchers' name for a dtype (the enums share their order).
inline Element element(DType t) {
  static_assert(static_cast<int>(DType::f32) == static_cast<int>(Element::f32) &&
                static_cast<int>(DType::f64) == static_cast<int>(Element::f64) &&
                static_cast<int>(DType::i32) == static_cast<int>(Element::i32) &&
                static_cast<int>(DType::i64) == static_cast<int>(Element::i64) &&
                static_cast<int>(DType::boolean) == static_cast<int>(Element::boolean) &&
                static_cast<int>(DType::bf16) == static_cast<int>(Element::bf16) &&
                static_cast<int>(DType::f16) == static_cast<int>(Element::f16));
  return static_cast<Element>(static_cast<int>(t));
}

// Fails with the node's name when a CUDA runtime call did not succeed.
void check(const KernelContext& ctx, cudaError_t status, std::string_view what);
// After a launcher: fails when it had no kernel for these types or the launch was refused.
void check_launch(const KernelContext& ctx, bool launched, std::string_view what);
// The step's Verdict as the launchers take it: two words, position then detail (launch.h).
// Fails, naming the node, when the step has none (a kernel registered without a
// VerdictMessage).
unsigned long long* verdict_words(const KernelContext& ctx);
// y ← x, `bytes` bytes on the device (nothing when y == x or bytes == 0).
void copy_on_device(const KernelContext& ctx, CudaBackend& gpu, void* y, const void* x, std::size_t bytes);

// Row-major strides of `dims`, in elements.
std::vector<std::int64_t> row_major_strides(const std::vector<std::int64_t>& dims);
// Per dim of `out`, the stride of `in` broadcast to it (NumPy rules: `in` aligned to the
// right; 0 where `in` has size 1 or lacks the dim).
std::vector<std::int64_t> broadcast_strides(const Shape& in, const Shape& out);

// A walk over the box `dims` with a stride per dim for each of N operands, simplified: dims
// of size 1 dropped, neighbours merged where every operand steps through them as one. Fails
// (naming the node) when more than kMaxDims dims remain; an empty box becomes one dim of 1.
template <int N>
Walk<N> make_walk(const KernelContext& ctx, const std::vector<std::int64_t>& dims,
                  const std::array<std::vector<std::int64_t>, N>& strides) {
  std::vector<std::int64_t> merged_dims;
  std::array<std::vector<std::int64_t>, N> merged;
  for (std::size_t d = 0; d < dims.size(); ++d) {
    if (dims[d] == 1) continue;
    bool mergeable = !merged_dims.empty();
    for (int k = 0; k < N && mergeable; ++k) mergeable = merged[k].back() == strides[k][d] * dims[d];
    if (mergeable) {
      merged_dims.back() *= dims[d];
      for (int k = 0; k < N; ++k) merged[k].back() = strides[k][d];
      continue;
    }
    merged_dims.push_back(dims[d]);
    for (int k = 0; k < N; ++k) merged[k].push_back(strides[k][d]);
  }
  if (merged_dims.empty()) {
    merged_dims.push_back(1);
    for (int k = 0; k < N; ++k) merged[k].push_back(0);
  }
  if (merged_dims.size() > static_cast<std::size_t>(kMaxDims))
    ctx.fail("the CUDA backend walks at most " + std::to_string(kMaxDims) + " dims after merging, this needs " +
             std::to_string(merged_dims.size()));
  Walk<N> walk;
  walk.rank = static_cast<int>(merged_dims.size());
  for (int d = 0; d < walk.rank; ++d) {
    walk.dims[d] = merged_dims[static_cast<std::size_t>(d)];
    for (int k = 0; k < N; ++k) walk.strides[k][d] = merged[k][static_cast<std::size_t>(d)];
  }
  return walk;
}

// Whether every operand of a one-dim walk steps by 1: the walk is a plain copy.
template <int N>
bool is_contiguous(const Walk<N>& walk) {
  if (walk.rank != 1) return false;
  for (int k = 0; k < N; ++k)
    if (walk.strides[k][0] != 1) return false;
  return true;
}

}  // namespace fovea::cuda_backend

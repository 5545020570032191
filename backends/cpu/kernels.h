// The CPU backend's kernel families; each registers its kernels into the registry.
#pragma once

#include "fovea/backends/backend.h"

namespace fovea::cpu_backend {

// Elements per parallel chunk for cheap elementwise loops: below this, waking threads costs
// more than it saves.
inline constexpr std::int64_t kElementwiseGrain = 1 << 15;

void register_elementwise_kernels(KernelRegistry& registry);
void register_reduce_kernels(KernelRegistry& registry);
void register_matmul_kernels(KernelRegistry& registry);
void register_shape_kernels(KernelRegistry& registry);
void register_indexing_kernels(KernelRegistry& registry);
void register_creation_kernels(KernelRegistry& registry);
void register_state_kernels(KernelRegistry& registry);
void register_attention_kernels(KernelRegistry& registry);
void register_normalization_kernels(KernelRegistry& registry);
void register_fused_elementwise_kernels(KernelRegistry& registry);

// Sets OpenBLAS's thread count (the backend gives BLAS the same cores as its own pool).
void set_blas_threads(int threads);

}  // namespace fovea::cpu_backend

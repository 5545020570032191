// The CPU backend's kernel families; each registers its kernels into the registry.
#pragma once

#include "fovea/backends/backend.h"
#include "fovea/backends/cpu/isa_namespace.h"
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

namespace fovea::cpu_backend {

// Elements per parallel chunk for cheap elementwise loops: below this, waking threads costs
// more than it saves.
inline constexpr std::int64_t kElementwiseGrain = 1 << 15;

// The families of the instruction set this file is compiled for (isa_namespace.h).
namespace FOVEA_ISA_NAMESPACE {

// Every family below: what the backend calls (backends/cpu/isa_kernels.h). compiled_programs:
// CpuOptions::compiled_programs.
void register_all_kernels(KernelRegistry& registry, bool compiled_programs);

void register_elementwise_kernels(KernelRegistry& registry);
void register_reduce_kernels(KernelRegistry& registry);
void register_matmul_kernels(KernelRegistry& registry);
void register_shape_kernels(KernelRegistry& registry);
void register_indexing_kernels(KernelRegistry& registry);
void register_creation_kernels(KernelRegistry& registry);
void register_state_kernels(KernelRegistry& registry);
void register_attention_kernels(KernelRegistry& registry);
void register_normalization_kernels(KernelRegistry& registry);
void register_fused_elementwise_kernels(KernelRegistry& registry, bool compiled_programs);
void register_convolution_kernels(KernelRegistry& registry);
void register_pooling_kernels(KernelRegistry& registry);

}  // namespace FOVEA_ISA_NAMESPACE

}  // namespace fovea::cpu_backend

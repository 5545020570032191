// The CPU backend's kernel families for one instruction set (isa_namespace.h): compiled once per
// Isa, like the families themselves, and called by the backend for the Isa it runs.
#include "fovea/backends/cpu/kernels.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

void register_all_kernels(KernelRegistry& registry, bool compiled_programs) {
  register_elementwise_kernels(registry);
  register_reduce_kernels(registry);
  register_matmul_kernels(registry);
  register_shape_kernels(registry);
  register_indexing_kernels(registry);
  register_creation_kernels(registry);
  register_state_kernels(registry);
  register_attention_kernels(registry);
  register_normalization_kernels(registry);
  register_fused_elementwise_kernels(registry, compiled_programs);
  register_convolution_kernels(registry);
  register_pooling_kernels(registry);
}

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE

// The entry points of the CPU kernels compiled for each instruction set (core/cpu_features.h),
// for the backend (cpu_backend.cpp), which is compiled once, for plain x86-64, and registers the
// kernels of the Isa it was asked for.
//
// Each is backends/cpu/all_kernels.cpp compiled with the -march of its level; see
// isa_namespace.h and the CPU kernels' section of CMakeLists.txt for how the copies are kept apart.
#pragma once

#include "fovea/backends/backend.h"

namespace fovea::cpu_backend {

// Sets OpenBLAS's thread count (the backend gives BLAS the same cores as its own pool).
void set_blas_threads(int threads);

namespace portable {
void register_all_kernels(KernelRegistry& registry, bool compiled_programs);
}  // namespace portable

#if defined(FOVEA_ISA_VARIANTS)
namespace avx2 {
void register_all_kernels(KernelRegistry& registry, bool compiled_programs);
}  // namespace avx2

namespace avx512 {
void register_all_kernels(KernelRegistry& registry, bool compiled_programs);
}  // namespace avx512
#endif

}  // namespace fovea::cpu_backend

#include "fovea/backends/cpu/kernels.h"

namespace fovea::cpu_backend {

void register_indexing_kernels(KernelRegistry&) {}

}  // namespace fovea::cpu_backend

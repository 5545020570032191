#include <cblas.h>

#include "fovea/backends/cpu/isa_kernels.h"

namespace fovea::cpu_backend {

void set_blas_threads(int threads) { openblas_set_num_threads(threads); }

}  // namespace fovea::cpu_backend

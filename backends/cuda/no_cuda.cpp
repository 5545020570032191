// Built when the CUDA toolkit was not found (or FOVEA_ENABLE_CUDA is OFF).
#include <string>

#include "fovea/backends/backend.h"

namespace fovea {

bool cuda_available(std::string* reason) {
  if (reason) *reason = "this build of Fovea has no CUDA backend (nvcc was not found or FOVEA_ENABLE_CUDA=OFF)";
  return false;
}

}  // namespace fovea

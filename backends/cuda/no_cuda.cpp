// Built when the CUDA toolkit was not found (or FOVEA_ENABLE_CUDA is OFF).
#include <string>

#include "fovea/backends/backend.h"

namespace fovea {

namespace {
constexpr const char* kNoCuda = "this build of Fovea has no CUDA backend (nvcc was not found or FOVEA_ENABLE_CUDA=OFF)";
}

bool cuda_available(std::string* reason) {
  if (reason) *reason = kNoCuda;
  return false;
}

std::shared_ptr<Backend> cuda(int device) {
  (void)device;
  throw Error(std::string("fovea::cuda(): ") + kNoCuda);
}

}  // namespace fovea

// Whether a GPU is visible to this process. The CUDA backend proper builds on this file.
#include <cuda_runtime.h>

#include <string>

#include "fovea/backends/backend.h"

namespace fovea {

bool cuda_available(std::string* reason) {
  int count = 0;
  const cudaError_t status = cudaGetDeviceCount(&count);
  if (status != cudaSuccess || count == 0) {
    if (reason)
      *reason = status != cudaSuccess ? std::string("CUDA reports: ") + cudaGetErrorString(status)
                                      : std::string("no CUDA device is visible");
    return false;
  }
  return true;
}

}  // namespace fovea

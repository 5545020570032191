// The three CUDA runtime calls the attention launchers make, answered for the emulated device
// (simt.h's options): the emulation test links no libcudart and needs no driver.
#include <cuda_runtime.h>

#include "fovea/tests/cuda_emulation/simt.h"

extern "C" cudaError_t cudaGetDevice(int* device) {
  *device = 0;
  return cudaSuccess;
}

extern "C" cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attribute, int) {
  if (attribute == cudaDevAttrComputeCapabilityMajor)
    *value = fovea::cuda_emulation::options.compute_major;
  else if (attribute == cudaDevAttrMaxSharedMemoryPerBlockOptin)
    *value = fovea::cuda_emulation::options.shared_optin;
  else
    return cudaErrorInvalidValue;
  return cudaSuccess;
}

extern "C" cudaError_t cudaGetLastError() { return cudaSuccess; }

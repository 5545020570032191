// backends/cuda/convolution.cu (convolutions, pooling, padding) compiled by g++ for the SIMT
// emulator: simt.h first, so that the CUDA built-ins the kernel file uses are defined before it.
#include "fovea/tests/cuda_emulation/simt.h"

#include "fovea/backends/cuda/convolution.cu"

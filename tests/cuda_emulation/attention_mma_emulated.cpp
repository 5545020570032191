// backends/cuda/attention_mma.cu (the tensor-core attention forward) compiled by g++ for the SIMT
// emulator: simt.h and ptx.h first, so that the CUDA built-ins
// and PTX wrappers the kernel file uses are defined before it.
#include "fovea/tests/cuda_emulation/ptx.h"
#include "fovea/tests/cuda_emulation/simt.h"

#include "fovea/backends/cuda/attention_mma.cu"

// FOVEA_LAUNCH(kernel, grid, block, shared_bytes, stream)(arguments...): a kernel launch,
//
//   kernel<<<grid, block, shared_bytes, stream>>>(arguments...)
//
// under nvcc, and under FOVEA_CUDA_EMULATION (the kernel file compiled by g++ for the CPU test
// tests/cuda_emulation/) a call to the SIMT emulator's launch for the same grid. The emulator is
// a test, so this backend header does not include it: the emulated build includes it (simt.h,
// which defines emulated_launch) before the kernel file. A macro, not a function, because the
// triple-chevron syntax is one. A kernel named with template arguments is passed in
// parentheses, FOVEA_LAUNCH((kernel<Half, 64>), ...), so its comma does not split it.
#pragma once

#ifdef FOVEA_CUDA_EMULATION
#define FOVEA_LAUNCH(kernel, grid, block, shared_bytes, stream) \
  ::fovea::cuda_backend::emulated_launch(kernel, grid, block, shared_bytes, stream)
#else
#define FOVEA_LAUNCH(kernel, grid, block, shared_bytes, stream) kernel<<<grid, block, shared_bytes, stream>>>
#endif

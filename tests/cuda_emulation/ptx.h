// The emulator's stand-ins for mma.cuh's PTX wrappers, with the same names, signatures and
// namespace (fovea::cuda_backend::mma_device): mma.cuh leaves its inline PTX out when compiled
// with FOVEA_CUDA_EMULATION, and the *_emulated.cpp wrappers include this file (after simt.h)
// before the kernel file. Each forwards to simt.h, which says what is emulated from which
// section of the PTX ISA.
#pragma once

#include <cmath>
#include <cstdint>

#include "fovea/tests/cuda_emulation/simt.h"

namespace fovea::cuda_backend::mma_device {

// A shared-space address is an offset into the kernel file's shared memory buffer (simt.h).
inline std::uint32_t shared_address(const void* pointer) {
  const auto* p = static_cast<const unsigned char*>(pointer);
  if (p < ::fovea::cuda_backend::shared || p > ::fovea::cuda_backend::shared + ::fovea::cuda_emulation::kMaxShared)
    ::fovea::cuda_emulation::fail("shared_address of a pointer outside shared memory");
  return static_cast<std::uint32_t>(p - ::fovea::cuda_backend::shared);
}

inline void copy_async(std::uint32_t destination, const void* source, int bytes) {
  ::fovea::cuda_emulation::copy_async(destination, source, bytes);
}
inline void commit_copies() { ::fovea::cuda_emulation::commit_copies(); }
template <int kPending>
inline void wait_copies() {
  ::fovea::cuda_emulation::wait_copies(kPending);
}

inline void load_matrices(std::uint32_t (&r)[4], std::uint32_t address) {
  ::fovea::cuda_emulation::load_matrices(r, address, false);
}
inline void load_matrices_transposed(std::uint32_t (&r)[4], std::uint32_t address) {
  ::fovea::cuda_emulation::load_matrices(r, address, true);
}

template <typename Half>
inline void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0, std::uint32_t b1) {
  ::fovea::cuda_emulation::mma<Half>(c, a, b0, b1);
}

// ex2.approx.ftz.f32 with std::exp2's rounding rather than the hardware's (about 2 ulp apart);
// results below 2^-126 flush to zero as .ftz does.
inline float exp2_approx(float x) {
  const float y = std::exp2(x);
  return y < 0x1p-126f ? 0.0f : y;
}

}  // namespace fovea::cuda_backend::mma_device

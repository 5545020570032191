// Philox uniforms for a run of consecutive elements, eight counter blocks at a time.
//
// core/philox.h computes one block (four elements) per call: ten rounds of two 32×32→64-bit
// multiplies that depend on each other, so a scalar loop waits on the multiplier. Here eight
// consecutive blocks go through the rounds side by side, one per 32-bit SIMD lane. With AVX2
// (chosen at build time) the rounds are written with intrinsics: vpmuludq multiplies the even
// lanes, a shift brings the odd ones down, and blends sort the 64-bit products back into high
// and low halves per lane. Without it, the same rounds run lane by lane in plain C++.
// The arithmetic is exactly core/philox.h's, so the numbers are the same bits: the tests
// compare against philox::uniform element by element.
#pragma once

#include <cstdint>

#if defined(__AVX2__)
#include <immintrin.h>
#endif

#include "fovea/backends/cpu/isa_namespace.h"
#include "fovea/core/philox.h"

namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE {

namespace philox_detail {

inline constexpr int kLanes = 8;
inline constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
inline constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;

// Ten Philox rounds on eight counters (c0..c3 hold word k of block j in lane j).
inline void rounds(std::uint32_t (&c0)[kLanes], std::uint32_t (&c1)[kLanes], std::uint32_t (&c2)[kLanes],
                   std::uint32_t (&c3)[kLanes], std::uint32_t key0, std::uint32_t key1) {
#if defined(__AVX2__)
  __m256i v0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c0));
  __m256i v1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c1));
  __m256i v2 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c2));
  __m256i v3 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(c3));
  const __m256i m0 = _mm256_set1_epi32(static_cast<int>(M0)), m1 = _mm256_set1_epi32(static_cast<int>(M1));
  // hi and lo 32-bit halves of x·m, lane by lane.
  auto widening_multiply = [](__m256i x, __m256i m, __m256i& hi, __m256i& lo) {
    const __m256i even = _mm256_mul_epu32(x, m);                        // lanes 0,2,4,6 as 64-bit
    const __m256i odd = _mm256_mul_epu32(_mm256_srli_epi64(x, 32), m);  // lanes 1,3,5,7
    lo = _mm256_blend_epi32(even, _mm256_slli_epi64(odd, 32), 0xAA);
    hi = _mm256_blend_epi32(_mm256_srli_epi64(even, 32), odd, 0xAA);
  };
  for (int round = 0; round < 10; ++round) {
    __m256i hi0, lo0, hi1, lo1;
    widening_multiply(v0, m0, hi0, lo0);
    widening_multiply(v2, m1, hi1, lo1);
    const __m256i k0 = _mm256_set1_epi32(static_cast<int>(key0)), k1 = _mm256_set1_epi32(static_cast<int>(key1));
    v0 = _mm256_xor_si256(_mm256_xor_si256(hi1, v1), k0);
    v2 = _mm256_xor_si256(_mm256_xor_si256(hi0, v3), k1);
    v1 = lo1;
    v3 = lo0;
    key0 += W0;
    key1 += W1;
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c0), v0);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c1), v1);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c2), v2);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(c3), v3);
#else
  for (int round = 0; round < 10; ++round) {
    for (int j = 0; j < kLanes; ++j) {
      const std::uint64_t p0 = static_cast<std::uint64_t>(M0) * c0[j];
      const std::uint64_t p1 = static_cast<std::uint64_t>(M1) * c2[j];
      const auto n0 = static_cast<std::uint32_t>(p1 >> 32) ^ c1[j] ^ key0;
      const auto n2 = static_cast<std::uint32_t>(p0 >> 32) ^ c3[j] ^ key1;
      c1[j] = static_cast<std::uint32_t>(p1);
      c3[j] = static_cast<std::uint32_t>(p0);
      c0[j] = n0;
      c2[j] = n2;
    }
    key0 += W0;
    key1 += W1;
  }
#endif
}

}  // namespace philox_detail

// y[i] = T(low + (high − low)·philox::uniform(seed, stream, begin + i)) for i < n.
template <typename T>
void philox_uniform_run(std::uint64_t seed, std::uint64_t stream, double low, double high, std::int64_t begin,
                        std::int64_t n, T* y) {
  constexpr int kLanes = philox_detail::kLanes;
  const double scale = high - low;
  const auto k0 = static_cast<std::uint32_t>(seed), k1 = static_cast<std::uint32_t>(seed >> 32);
  const auto s0 = static_cast<std::uint32_t>(stream), s1 = static_cast<std::uint32_t>(stream >> 32);
  auto one = [&](std::int64_t i) {
    y[i] = static_cast<T>(low + scale * philox::uniform(seed, stream, static_cast<std::uint64_t>(begin + i)));
  };
  std::int64_t i = 0;
  // The head, up to the first element that starts a block.
  for (; i < n && (begin + i) % 4 != 0; ++i) one(i);
  // Whole groups of eight blocks (32 elements).
  for (; i + 4 * kLanes <= n; i += 4 * kLanes) {
    const auto first = static_cast<std::uint64_t>(begin + i) / 4;
    std::uint32_t c0[kLanes], c1[kLanes], c2[kLanes], c3[kLanes];
    for (int j = 0; j < kLanes; ++j) {
      const std::uint64_t block = first + static_cast<std::uint64_t>(j);
      c0[j] = static_cast<std::uint32_t>(block);
      c1[j] = static_cast<std::uint32_t>(block >> 32);
      c2[j] = s0;
      c3[j] = s1;
    }
    philox_detail::rounds(c0, c1, c2, c3, k0, k1);
    // Element 4j + lane of the group is lane `lane` of block j.
    for (int j = 0; j < kLanes; ++j) {
      y[i + 4 * j + 0] = static_cast<T>(low + scale * philox::to_unit(c0[j]));
      y[i + 4 * j + 1] = static_cast<T>(low + scale * philox::to_unit(c1[j]));
      y[i + 4 * j + 2] = static_cast<T>(low + scale * philox::to_unit(c2[j]));
      y[i + 4 * j + 3] = static_cast<T>(low + scale * philox::to_unit(c3[j]));
    }
  }
  for (; i < n; ++i) one(i);
}

}  // namespace fovea::cpu_backend::FOVEA_ISA_NAMESPACE

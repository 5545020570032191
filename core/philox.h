// Philox4x32-10: a counter-based random number generator (Salmon et al., "Parallel random
// numbers: as easy as 1, 2, 3", SC'11).
//
// A random number is a pure function of (key, counter): ten rounds of multiply, xor and key
// bump scramble a 128-bit counter under a 64-bit key. Element i of a random tensor uses
// counter block i/4 and lane i%4, so every thread count, and the GPU, draw the same numbers
// for the same element. The functions are __host__ __device__ so CUDA kernels share them.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define FOVEA_HD __host__ __device__ __forceinline__
#else
#define FOVEA_HD inline
#endif

namespace fovea::philox {

struct Block {
  std::uint32_t v[4];
};

FOVEA_HD Block philox4x32_10(Block ctr, std::uint32_t k0, std::uint32_t k1) {
  constexpr std::uint32_t M0 = 0xD2511F53u, M1 = 0xCD9E8D57u;
  constexpr std::uint32_t W0 = 0x9E3779B9u, W1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = static_cast<std::uint64_t>(M0) * ctr.v[0];
    const std::uint64_t p1 = static_cast<std::uint64_t>(M1) * ctr.v[2];
    const auto hi0 = static_cast<std::uint32_t>(p0 >> 32), lo0 = static_cast<std::uint32_t>(p0);
    const auto hi1 = static_cast<std::uint32_t>(p1 >> 32), lo1 = static_cast<std::uint32_t>(p1);
    ctr = Block{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += W0;
    k1 += W1;
  }
  return ctr;
}

// The four raw 32-bit words of block `block` in stream `stream` under `seed`.
FOVEA_HD Block words(std::uint64_t seed, std::uint64_t stream, std::uint64_t block) {
  Block ctr{{static_cast<std::uint32_t>(block), static_cast<std::uint32_t>(block >> 32),
             static_cast<std::uint32_t>(stream), static_cast<std::uint32_t>(stream >> 32)}};
  return philox4x32_10(ctr, static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32));
}

// A uniform number in [0, 1) with 24 random bits (exact in f32 and f64).
FOVEA_HD double to_unit(std::uint32_t w) { return static_cast<double>(w >> 8) * (1.0 / 16777216.0); }

// Element i of a uniform [0, 1) stream.
FOVEA_HD double uniform(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  return to_unit(words(seed, stream, i / 4).v[i % 4]);
}

// Element i of a standard normal stream: Box-Muller on lanes (0,1) and (2,3) of block i/4;
// even elements take the cosine branch, odd ones the sine branch of the same pair.
FOVEA_HD double normal(std::uint64_t seed, std::uint64_t stream, std::uint64_t i) {
  const Block b = words(seed, stream, i / 4);
  const unsigned pair = static_cast<unsigned>(i % 4) / 2;
  const double u1 = 1.0 - to_unit(b.v[2 * pair]);  // (0, 1]: log is finite
  const double u2 = to_unit(b.v[2 * pair + 1]);
  const double r = std::sqrt(-2.0 * std::log(u1));
  constexpr double two_pi = 6.283185307179586;
  return (i % 2 == 0) ? r * std::cos(two_pi * u2) : r * std::sin(two_pi * u2);
}

// A 64-bit mix (splitmix64's finaliser) to derive stream ids from names and seeds.
FOVEA_HD std::uint64_t mix(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

}  // namespace fovea::philox

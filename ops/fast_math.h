// exp and tanh for f32 that a compiler can vectorize.
//
// The C library's expf and tanhf are calls the loop vectorizer cannot see through, so a loop
// over them runs one element at a time (tanhf costs about 20 ns). These versions are straight-
// line float arithmetic and bit moves with the branches written as selects, so GCC and Clang
// turn `for (i) y[i] = exp_f32(x[i])` into AVX2/FMA code, eight lanes at a time.
//
// exp(x) = 2^n · e^r,  n = round(x / ln 2),  r = x − n·ln 2 ∈ [−ln2/2, ln2/2]
//   ln 2 is split in two (hi has few mantissa bits, so n·hi is exact) to keep r accurate;
//   n is rounded with the 1.5·2²³ trick; e^r is a degree-7 polynomial (the Taylor coefficients are accurate enough on
//   this small interval: the error term r⁸/8! < 2⁻³⁰); 2^n is built in the exponent field. Below −87.34 the result
//   underflows to 0 (−inf included); above 88.72 it is +inf; NaN stays NaN. Accuracy: within 2 ulp of the correctly
//   rounded result over the whole range.
//
// tanh(x) = sign(x) · (1 − 2 / (e^{2|x|} + 1))   for |x| ≥ 0.625
//         = x + x³·P(x²)                           for |x| < 0.625
//   The exp form loses relative accuracy near 0 (1 − 2/(…) cancels), so small arguments use
//   an odd polynomial (the minimax coefficients of the Cephes library's tanhf).
//   Beyond |x| = 10 the result is ±1 in f32. Accuracy: within 3 ulp.
//
// On the GPU (nvcc compiling device code) the functions are CUDA's own expf and tanhf.
// Double precision always uses the C library: f64 is what the gradient checks run in.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "fovea/core/philox.h"  // FOVEA_HD

namespace fovea::fast {

#if !defined(__CUDA_ARCH__)
namespace detail {

inline std::uint32_t bits(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
inline float from_bits(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

}  // namespace detail
#endif

FOVEA_HD float exp_f32(float x) {
#if defined(__CUDA_ARCH__)
  return ::expf(x);
#else
  constexpr float log2e = 1.44269504088896341f;
  constexpr float ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
  constexpr float max_arg = 88.7228391f, min_arg = -87.3365448f;
  // Written so that NaN (for which every comparison is false) clamps too: a NaN n would make
  // the float-to-integer cast below undefined. The selects at the end restore inf, 0 and NaN.
  const float clamped = x < max_arg ? (x > min_arg ? x : min_arg) : max_arg;
  // round to nearest: adding and subtracting 1.5·2²³ leaves no fraction bits (and vectorizes,
  // where nearbyint would be a library call).
  constexpr float round_magic = 12582912.0f;
  const float n = (clamped * log2e + round_magic) - round_magic;
  const float r = (clamped - n * ln2_hi) - n * ln2_lo;
  // e^r ≈ 1 + r + r²/2! + … + r⁷/7!, Horner's scheme.
  float p = 1.0f / 5040.0f;
  p = p * r + 1.0f / 720.0f;
  p = p * r + 1.0f / 120.0f;
  p = p * r + 1.0f / 24.0f;
  p = p * r + 1.0f / 6.0f;
  p = p * r + 0.5f;
  p = p * r + 1.0f;
  p = p * r + 1.0f;
  // 2^n: n + 127 in the exponent field. n ∈ [−126, 128]; at 128 (only when x is at max_arg)
  // split the factor in two so the exponent field never overflows.
  const auto ni = static_cast<std::int32_t>(n);
  const std::int32_t half = ni / 2;
  const float scale_a = detail::from_bits(static_cast<std::uint32_t>(half + 127) << 23);
  const float scale_b = detail::from_bits(static_cast<std::uint32_t>(ni - half + 127) << 23);
  float y = p * scale_a * scale_b;
  y = x > max_arg ? INFINITY : y;
  y = x < min_arg ? 0.0f : y;
  return x != x ? x : y;
#endif
}

FOVEA_HD float tanh_f32(float x) {
#if defined(__CUDA_ARCH__)
  return ::tanhf(x);
#else
  const float a = x < 0.0f ? -x : x;
  // Large arguments: 1 − 2/(e^{2a} + 1), with a capped so e^{2a} stays finite.
  const float e = exp_f32(2.0f * (a < 10.0f ? a : 10.0f));
  const float large = 1.0f - 2.0f / (e + 1.0f);
  // Small arguments: x + x·z·P(z), z = x².
  const float z = x * x;
  float p = -5.70498872745e-3f;
  p = p * z + 2.06390887954e-2f;
  p = p * z - 5.37397155531e-2f;
  p = p * z + 1.33314422036e-1f;
  p = p * z - 3.33332819422e-1f;
  const float small = x + x * z * p;
  const float signed_large = x < 0.0f ? -large : large;
  const float y = a < 0.625f ? small : signed_large;
  return x != x ? x : y;
#endif
}

}  // namespace fovea::fast

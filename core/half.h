// bfloat16 and float16: the two 16-bit floating-point storage types of mixed precision.
//
//   bf16: 1 sign, 8 exponent, 7 mantissa bits. f32's range with 3 significant digits: the top
//         half of an f32, so converting is a rounding of the low 16 bits away.
//   f16:  1 sign, 5 exponent, 10 mantissa bits (IEEE 754 binary16). 3.3 digits, but values only
//         up to 65504 and down to 6e-8 (subnormals below 6.1e-5).
//
// Tensor cores multiply these at many times the f32 rate, and they halve the bytes a kernel
// reads. The engine uses them as *storage* types: a half tensor is converted to f32 for any
// arithmetic, and sums are kept in f32 (see ops/mixed_precision.h for where they appear).
//
// Conversions to half round to nearest, ties to even, as the hardware does; overflow gives ±inf
// and NaN stays NaN. From f64 the value is rounded to f32 first (as PyTorch and CUDA do), which
// can differ from one direct rounding in the last bit for values exactly between two halves
// after the first rounding; no f32 input is affected.
#pragma once

#include <bit>
#include <cstdint>

namespace fovea {

struct bfloat16 {
  std::uint16_t bits = 0;
};

struct float16 {
  std::uint16_t bits = 0;
};

// bf16 → f32 is exact: the bits are the top half of the f32.
constexpr float to_float(bfloat16 x) { return std::bit_cast<float>(static_cast<std::uint32_t>(x.bits) << 16); }

// f32 → bf16, nearest-even: add 0x7fff plus the lowest kept bit, then drop the low 16 bits.
// Adding can carry into the exponent, which is right (rounding up to the next binade, or to
// inf at the top). NaN is kept quiet instead, since the carry could turn it into inf.
constexpr bfloat16 to_bfloat16(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {static_cast<std::uint16_t>((u >> 16) | 0x0040u)};
  const std::uint32_t lowest_kept = (u >> 16) & 1u;
  return {static_cast<std::uint16_t>((u + 0x7fffu + lowest_kept) >> 16)};
}

// f16 → f32 is exact. Normal numbers rebias the exponent (15 → 127) and widen the mantissa;
// subnormals (exponent 0) are m·2^-24, exact in f32; exponent 31 is inf or NaN.
constexpr float to_float(float16 x) {
  const std::uint32_t sign = static_cast<std::uint32_t>(x.bits & 0x8000u) << 16;
  const std::uint32_t exponent = (x.bits >> 10) & 0x1fu;
  const std::uint32_t mantissa = x.bits & 0x3ffu;
  if (exponent == 31) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
  if (exponent == 0) {
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
  }
  return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
}

// f32 → f16, nearest-even. For normal results the low 13 mantissa bits are rounded away like
// bf16's 16; exponents above f16's range give inf. Results below 2^-14 become subnormals: the
// value is a multiple of 2^-24 there, so scaling by 2^24 and rounding to an integer (in f32,
// whose default rounding is nearest-even, exact for these magnitudes) gives the mantissa.
constexpr float16 to_float16(float x) {
  const std::uint32_t u = std::bit_cast<std::uint32_t>(x);
  const auto sign = static_cast<std::uint16_t>((u >> 16) & 0x8000u);
  const std::uint32_t magnitude = u & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return {static_cast<std::uint16_t>(sign | 0x7e00u | ((magnitude >> 13) & 0x3ffu))};
  if (magnitude >= 0x477ff000u) return {static_cast<std::uint16_t>(sign | 0x7c00u)};  // ≥ 65520: rounds to inf
  if (magnitude < 0x38800000u) {                                                      // below 2^-14: subnormal
    const float scaled = std::bit_cast<float>(magnitude) * 0x1p24f;                   // in [0, 1024)
    // Round half to even without <cmath> (constexpr): 2^23 added and taken away in f32.
    const float rounded = (scaled + 0x1p23f) - 0x1p23f;
    return {static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(rounded))};
  }
  const std::uint32_t lowest_kept = (magnitude >> 13) & 1u;
  const std::uint32_t rebased = magnitude - (112u << 23);  // exponent 127 bias → 15
  return {static_cast<std::uint16_t>(sign | ((rebased + 0xfffu + lowest_kept) >> 13))};
}

// The round trips through f32 the rest of the engine uses, and what a half value is worth.
constexpr float round_to_bfloat16(float x) { return to_float(to_bfloat16(x)); }
constexpr float round_to_float16(float x) { return to_float(to_float16(x)); }

}  // namespace fovea

// bfloat16 and float16 (core/half.h): conversions against the definition of round-to-nearest-
// even, checked over every half value and on random floats, and the Tensor paths that use them.
#include <bit>
#include <cstring>
#include <limits>

#include "testing.h"

using namespace fovea;

namespace {

// The reference for rounding: among all finite halves (every bit pattern), the nearest to x,
// ties to the even mantissa; beyond the largest finite half by half an ulp or more, ±inf.
// Brute force, so it shares nothing with the conversion under test.
template <typename H>
std::uint16_t nearest_by_search(float x) {
  const double target = x;
  std::uint16_t best = 0;
  double best_distance = std::numeric_limits<double>::infinity();
  for (std::uint32_t bits = 0; bits < 0x10000; ++bits) {
    const float v = to_float(H{static_cast<std::uint16_t>(bits)});
    if (!std::isfinite(v)) continue;
    const double distance = std::abs(static_cast<double>(v) - target);
    const bool even = (bits & 1) == 0;
    if (distance < best_distance || (distance == best_distance && even)) {
      // Of the two zeros, keep the one with x's sign.
      if (distance == best_distance && v == 0 && std::signbit(v) != std::signbit(x)) continue;
      best = static_cast<std::uint16_t>(bits);
      best_distance = distance;
    }
  }
  return best;
}

}  // namespace

TEST_CASE("every bf16 and f16 value survives the round trip through f32, and NaN stays NaN") {
  for (std::uint32_t bits = 0; bits < 0x10000; ++bits) {
    const auto b = static_cast<std::uint16_t>(bits);
    const float fb = to_float(bfloat16{b}), fh = to_float(float16{b});
    if (std::isnan(fb)) {
      CHECK(std::isnan(to_float(to_bfloat16(fb))));
    } else if (to_bfloat16(fb).bits != b) {
      FAIL_CHECK("bf16 " << bits << " comes back as " << to_bfloat16(fb).bits);
    }
    if (std::isnan(fh)) {
      CHECK(std::isnan(to_float(to_float16(fh))));
    } else if (to_float16(fh).bits != b) {
      FAIL_CHECK("f16 " << bits << " comes back as " << to_float16(fh).bits);
    }
  }
}

TEST_CASE("f16 decodes the reference values of IEEE binary16: normals, subnormals, the limits") {
  CHECK(to_float(float16{0x3c00}) == 1.0f);
  CHECK(to_float(float16{0xc000}) == -2.0f);
  CHECK(to_float(float16{0x7bff}) == 65504.0f);
  CHECK(to_float(float16{0x0400}) == 0x1p-14f);  // the smallest normal
  CHECK(to_float(float16{0x0001}) == 0x1p-24f);  // the smallest subnormal
  CHECK(to_float(float16{0x03ff}) == 1023 * 0x1p-24f);
  CHECK(std::isinf(to_float(float16{0x7c00})));
  CHECK(std::signbit(to_float(float16{0x8000})));
  CHECK(to_float16(0.1f).bits == 0x2e66);
  CHECK(to_bfloat16(0.1f).bits == 0x3dcd);
  CHECK(to_float(bfloat16{0x3f80}) == 1.0f);
}

TEST_CASE("f32 to bf16 and f16 rounds to the nearest half, ties to even, overflow to inf") {
  std::mt19937_64 rng(11);
  std::vector<float> xs = {0.0f,
                           -0.0f,
                           1.0f,
                           65504.0f,
                           65519.99f,
                           65520.0f,
                           -65520.0f,
                           1e-8f,
                           0x1p-25f,
                           0x1.8p-24f,
                           0x1.4p-24f,
                           3e38f,
                           1.00390625f /* bf16 tie */,
                           1.01171875f,
                           0x1p-14f};
  std::uniform_real_distribution<float> unit(-1.0f, 1.0f);
  for (int i = 0; i < 400; ++i) xs.push_back(unit(rng) * std::ldexp(1.0f, static_cast<int>(rng() % 60) - 30));
  for (int i = 0; i < 100; ++i)  // exact ties between two halves: a half plus half its ulp
    xs.push_back(std::bit_cast<float>((static_cast<std::uint32_t>(rng() % 0x7f00) << 16) | 0x8000u));
  for (float x : xs) {
    CAPTURE(x);
    CHECK(to_bfloat16(x).bits == nearest_by_search<bfloat16>(x));
    const std::uint16_t f16 = to_float16(x).bits;
    if (std::abs(x) >= 65520.0f) {
      CHECK(std::isinf(to_float(float16{f16})));
      CHECK(std::signbit(to_float(float16{f16})) == std::signbit(x));
    } else {
      CHECK(f16 == nearest_by_search<float16>(x));
    }
  }
  const float inf = std::numeric_limits<float>::infinity();
  CHECK(std::isinf(to_float(to_bfloat16(inf))));
  CHECK(std::isinf(to_float(to_bfloat16(3.4e38f))));  // beyond the largest bf16 by more than half an ulp
  CHECK(std::isnan(to_float(to_float16(std::numeric_limits<float>::quiet_NaN()))));
}

TEST_CASE("Tensors hold bf16 and f16: filled, read, converted to and from f32, printed") {
  Tensor t = Tensor::full(bf16, {3}, 0.1);
  CHECK(t.nbytes() == 6);
  CHECK(t.at(0) == static_cast<double>(round_to_bfloat16(0.1f)));
  Tensor x = testing::random_tensor(f32, {4, 5}, 3);
  for (DType h : {bf16, f16}) {
    CAPTURE(dtype_name(h));
    Tensor y = x.to(h);
    CHECK(y.dtype() == h);
    Tensor back = y.to(f32);
    for (std::int64_t i = 0; i < x.numel(); ++i) {
      const float v = static_cast<float>(x.at(i));
      CHECK(back.at(i) == (h == bf16 ? round_to_bfloat16(v) : round_to_float16(v)));
    }
    CHECK(y.to(f64).at(3) == back.at(3));
    CHECK(Tensor::full(h, {}, 2.5).to(i32).at(0) == 2);
  }
  CHECK(Tensor::full(f16, {2}, 0.5).to_string().find("0.5") != std::string::npos);
}

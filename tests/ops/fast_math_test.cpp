// The vectorizable f32 exp and tanh of ops/fast_math.h against the C library in double.
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#include <doctest/doctest.h>

#include "fovea/ops/fast_math.h"

namespace {

// Distance in units in the last place between a float result and the exact value, measured
// in the float grid around the exact value.
double ulps(float got, double exact) {
  const float rounded = static_cast<float>(exact);
  const float step = std::nextafter(std::fabs(rounded), std::numeric_limits<float>::infinity()) - std::fabs(rounded);
  return std::fabs(static_cast<double>(got) - exact) / static_cast<double>(step);
}

// Every float in [lo, hi] with a stride over the bit patterns, so each binade is visited.
std::vector<float> sweep(float lo, float hi, std::size_t count) {
  std::vector<float> xs;
  for (std::size_t i = 0; i <= count; ++i)
    xs.push_back(lo + (hi - lo) * static_cast<float>(i) / static_cast<float>(count));
  for (float x = 1e-30f; x < hi; x *= 1.37f) {
    if (x >= lo) xs.push_back(x);
    if (-x >= lo && -x <= hi) xs.push_back(-x);
  }
  return xs;
}

}  // namespace

TEST_CASE("fast exp_f32 is within 2 ulp of exp over the whole finite range") {
  double worst = 0;
  for (float x : sweep(-87.0f, 88.5f, 400000)) {
    const double err = ulps(fovea::fast::exp_f32(x), std::exp(static_cast<double>(x)));
    if (err > worst) worst = err;
  }
  CHECK(worst <= 2.0);
}

TEST_CASE("fast exp_f32 underflows to 0, overflows to inf and keeps NaN") {
  CHECK(fovea::fast::exp_f32(-90.0f) == 0.0f);
  CHECK(fovea::fast::exp_f32(-std::numeric_limits<float>::infinity()) == 0.0f);
  CHECK(fovea::fast::exp_f32(-1e30f) == 0.0f);
  CHECK(std::isinf(fovea::fast::exp_f32(89.0f)));
  CHECK(std::isinf(fovea::fast::exp_f32(std::numeric_limits<float>::infinity())));
  CHECK(std::isnan(fovea::fast::exp_f32(std::numeric_limits<float>::quiet_NaN())));
  CHECK(fovea::fast::exp_f32(0.0f) == 1.0f);
  CHECK(std::isfinite(fovea::fast::exp_f32(88.72f)));
}

TEST_CASE("fast tanh_f32 is within 3 ulp of tanh and saturates to ±1") {
  double worst = 0;
  for (float x : sweep(-12.0f, 12.0f, 400000)) {
    const double err = ulps(fovea::fast::tanh_f32(x), std::tanh(static_cast<double>(x)));
    if (err > worst) worst = err;
  }
  CHECK(worst <= 3.0);
  CHECK(fovea::fast::tanh_f32(0.0f) == 0.0f);
  CHECK(fovea::fast::tanh_f32(1e-20f) == 1e-20f);
  CHECK(fovea::fast::tanh_f32(50.0f) == 1.0f);
  CHECK(fovea::fast::tanh_f32(-std::numeric_limits<float>::infinity()) == -1.0f);
  CHECK(std::isnan(fovea::fast::tanh_f32(std::numeric_limits<float>::quiet_NaN())));
}

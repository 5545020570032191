#include "fovea/core/init.h"

#include <cmath>

#include <fmt/format.h>

#include "fovea/core/philox.h"

namespace fovea {

void fans(const Shape& shape, double& fan_in, double& fan_out) {
  if (shape.rank() == 0) {
    fan_in = fan_out = 1;
  } else if (shape.rank() == 1) {
    fan_in = fan_out = static_cast<double>(shape[0]);
  } else {
    double stack = 1;
    for (int i = 0; i + 2 < shape.rank(); ++i) stack *= static_cast<double>(shape[i]);
    fan_in = static_cast<double>(shape[shape.rank() - 2]) * stack;
    fan_out = static_cast<double>(shape[shape.rank() - 1]) * stack;
  }
}

namespace {

// Applies x[i] = f(i) over a floating tensor of either precision.
template <typename F> void fill_with(Tensor& t, F f) {
  visit_dtype(t.dtype(), [&](auto zero) {
    using T = decltype(zero);
    T* p = reinterpret_cast<T*>(t.raw());
    for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(f(static_cast<std::uint64_t>(i)));
  });
}

}  // namespace

namespace init {

Initializer constant(double value) {
  return {[value](Tensor& t, std::uint64_t, std::uint64_t) { fill_with(t, [&](std::uint64_t) { return value; }); },
          fmt::format("constant({:g})", value)};
}
Initializer zeros() { return {constant(0.0).fill, "zeros"}; }
Initializer ones() { return {constant(1.0).fill, "ones"}; }

Initializer uniform(double low, double high) {
  return {[low, high](Tensor& t, std::uint64_t seed, std::uint64_t stream) {
            fill_with(t, [&](std::uint64_t i) { return low + (high - low) * philox::uniform(seed, stream, i); });
          },
          fmt::format("uniform({:g}, {:g})", low, high)};
}

Initializer normal(double mean, double stddev) {
  return {[mean, stddev](Tensor& t, std::uint64_t seed, std::uint64_t stream) {
            fill_with(t, [&](std::uint64_t i) { return mean + stddev * philox::normal(seed, stream, i); });
          },
          fmt::format("normal({:g}, {:g})", mean, stddev)};
}

Initializer xavier_uniform(double gain) {
  return {[gain](Tensor& t, std::uint64_t seed, std::uint64_t stream) {
            double in, out;
            fans(t.shape(), in, out);
            const double a = gain * std::sqrt(6.0 / (in + out));
            uniform(-a, a).fill(t, seed, stream);
          },
          fmt::format("xavier_uniform(gain={:g})", gain)};
}

Initializer xavier_normal(double gain) {
  return {[gain](Tensor& t, std::uint64_t seed, std::uint64_t stream) {
            double in, out;
            fans(t.shape(), in, out);
            normal(0.0, gain * std::sqrt(2.0 / (in + out))).fill(t, seed, stream);
          },
          fmt::format("xavier_normal(gain={:g})", gain)};
}

Initializer kaiming_normal(double gain) {
  return {[gain](Tensor& t, std::uint64_t seed, std::uint64_t stream) {
            double in, out;
            fans(t.shape(), in, out);
            normal(0.0, gain / std::sqrt(in)).fill(t, seed, stream);
          },
          fmt::format("kaiming_normal(gain={:g})", gain)};
}

Initializer kaiming_uniform(double gain) {
  return {[gain](Tensor& t, std::uint64_t seed, std::uint64_t stream) {
            double in, out;
            fans(t.shape(), in, out);
            const double a = gain * std::sqrt(3.0 / in);
            uniform(-a, a).fill(t, seed, stream);
          },
          fmt::format("kaiming_uniform(gain={:g})", gain)};
}

}  // namespace init
}  // namespace fovea

// Initializers: how a parameter's persistent buffer is filled when it is declared.
//
// Every initializer draws from Philox keyed by the graph's seed and the parameter's scoped
// name, so a parameter gets the same initial values whatever else the graph contains.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "fovea/core/tensor.h"

namespace fovea {

struct Initializer {
  // Fills `t` (already allocated with the parameter's dtype and shape) from stream `stream`.
  std::function<void(Tensor& t, std::uint64_t seed, std::uint64_t stream)> fill;
  std::string description;  // "normal(0, 0.02)", shown in the text IR
};

namespace init {
Initializer zeros();
Initializer ones();
Initializer constant(double value);
Initializer uniform(double low, double high);
Initializer normal(double mean, double stddev);
// Glorot & Bengio (2010): U(-a, a) with a = gain * sqrt(6 / (fan_in + fan_out)).
Initializer xavier_uniform(double gain = 1.0);
// Glorot normal: N(0, gain^2 * 2 / (fan_in + fan_out)).
Initializer xavier_normal(double gain = 1.0);
// He et al. (2015): N(0, gain^2 / fan_in), gain = sqrt(2) for ReLU.
Initializer kaiming_normal(double gain = 1.4142135623730951);
// He uniform: U(-a, a) with a = gain * sqrt(3 / fan_in).
Initializer kaiming_uniform(double gain = 1.4142135623730951);
}  // namespace init

// Fan-in and fan-out of a weight of this shape, as a matmul(x, w) layer uses it: for a
// [in, out] matrix fan_in = in, fan_out = out; leading dims multiply both (a stack of
// matrices); a vector has fan_in = fan_out = its length.
void fans(const Shape& shape, double& fan_in, double& fan_out);

}  // namespace fovea

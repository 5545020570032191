// The gradient check every differentiable op and composite goes through.
//
// For y = f(x1, ..., xn) built in f64, the check forms the scalar L = Σ y ⊙ r with a fixed
// random r (so that every output element matters, with distinct weights), differentiates it
// with fovea::grad, and compares each ∂L/∂xi[j] with the central difference
//
//     (L(xi[j] + ε) - L(xi[j] - ε)) / 2ε,      ε = 1e-6,
//
// requiring |analytic - numeric| <= tolerance · max(1, |numeric|) (1e-6 by default). Central
// differences are accurate to O(ε²) plus rounding of O(1e-16/ε), about 1e-10 here, so a
// failure means a wrong rule, not noise. Keep inputs away from kinks (relu at 0, abs at 0,
// max ties): there the numeric derivative averages the two sides.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "testing.h"

namespace fovea::testing {

struct GradcheckInput {
  Shape shape;
  double low = -1.0, high = 1.0;
  DType dtype = f64;  // integer inputs (indices) are fed but not differentiated
  Tensor value = {};  // optional fixed value (indices, masks); random in [low, high) otherwise
};

using Builder = std::function<Value(Graph&, const std::vector<Value>&)>;

inline void gradcheck(const std::string& what, const Builder& build, const std::vector<GradcheckInput>& inputs,
                      double tolerance = 1e-6, std::uint64_t seed = 1234) {
  CAPTURE(what);
  Graph g;
  std::vector<Value> xs;
  Feeds feeds;
  std::vector<Tensor> values;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    xs.push_back(g.placeholder("x" + std::to_string(i), inputs[i].dtype, inputs[i].shape));
    values.push_back(inputs[i].value.defined()
                         ? inputs[i].value
                         : random_tensor(inputs[i].dtype, inputs[i].shape, seed + i, inputs[i].low, inputs[i].high));
  }
  const Value y = build(g, xs);
  REQUIRE(y.dtype() == f64);
  const Value r = g.constant(random_tensor(f64, y.shape(), seed + 999, 0.5, 1.5), "r");
  const Value loss = reduce_sum(y * r);

  std::vector<Value> wrt;
  std::vector<std::size_t> wrt_index;
  for (std::size_t i = 0; i < xs.size(); ++i)
    if (is_floating(inputs[i].dtype)) {
      wrt.push_back(xs[i]);
      wrt_index.push_back(i);
    }
  const std::vector<Value> grads = grad(loss, wrt);
  g.verify();

  auto feeds_for = [&](const std::vector<Tensor>& vals) {
    Feeds f;
    for (std::size_t i = 0; i < xs.size(); ++i) f.emplace_back(xs[i], vals[i]);
    return f;
  };
  std::vector<Value> outputs = grads;
  outputs.insert(outputs.begin(), loss);
  Executable analytic = compile(g, outputs);
  const std::vector<Tensor> got = analytic.run(feeds_for(values));
  Executable forward = compile(g, {loss});

  constexpr double eps = 1e-6;
  for (std::size_t k = 0; k < wrt.size(); ++k) {
    const std::size_t i = wrt_index[k];
    const Tensor& gk = got[k + 1];
    REQUIRE(gk.shape() == inputs[i].shape);
    for (std::int64_t j = 0; j < values[i].numel(); ++j) {
      std::vector<Tensor> plus = values, minus = values;
      plus[i] = values[i].clone();
      minus[i] = values[i].clone();
      plus[i].data<double>()[j] += eps;
      minus[i].data<double>()[j] -= eps;
      const double lp = forward.run(feeds_for(plus))[0].item();
      const double lm = forward.run(feeds_for(minus))[0].item();
      const double numeric = (lp - lm) / (2 * eps);
      const double analytic_value = gk.at(j);
      if (!(std::abs(analytic_value - numeric) <= tolerance * std::max(1.0, std::abs(numeric)))) {
        FAIL_CHECK(what << ": d/dx" << i << "[" << j << "] analytic " << analytic_value << " vs numeric " << numeric);
        return;
      }
    }
  }
}

// Checks ∂L/∂p, L = Σ y ⊙ r, for every element of every parameter in `parameters` against
// central differences taken by nudging the parameter's persistent buffer (f64): the
// parameters' counterpart of gradcheck, which differentiates with respect to placeholders.
inline void check_parameter_gradients(Graph& g, Value y, const std::vector<Value>& parameters, const Feeds& feeds,
                                      double tolerance = 1e-6) {
  const Value r = g.constant(random_tensor(f64, y.shape(), 77, 0.5, 1.5), "r");
  const Value loss = reduce_sum(y * r);
  const std::vector<Value> grads = grad(loss, parameters);
  Executable analytic = compile(g, grads);
  Executable forward = compile(g, {loss});
  const std::vector<Tensor> got = analytic.run(feeds);
  constexpr double eps = 1e-6;
  for (std::size_t k = 0; k < parameters.size(); ++k) {
    CAPTURE(parameters[k].name());
    auto buffer = g.parameter_value(parameters[k]).data<double>();
    for (std::size_t j = 0; j < buffer.size(); ++j) {
      const double saved = buffer[j];
      buffer[j] = saved + eps;
      const double plus = forward.run(feeds)[0].item();
      buffer[j] = saved - eps;
      const double minus = forward.run(feeds)[0].item();
      buffer[j] = saved;
      const double numeric = (plus - minus) / (2 * eps);
      const double analytic_value = got[k].at(static_cast<std::int64_t>(j));
      if (!(std::abs(analytic_value - numeric) <= tolerance * std::max(1.0, std::abs(numeric)))) {
        FAIL_CHECK(parameters[k].name() << "[" << j << "]: analytic " << analytic_value << " vs numeric " << numeric);
        return;
      }
    }
  }
}

}  // namespace fovea::testing

#include "fovea/nn/convolution.h"

#include <cmath>

#include <fmt/format.h>

#include "fovea/ops/batch_norm.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/shape_ops.h"
#include "fovea/ops/state.h"

namespace fovea::nn {

namespace {

// A per-channel vector [C] shaped to broadcast along axis 1 of a rank-`rank` x: [C, 1, ...].
Value per_channel(Value v, int rank) {
  std::vector<std::int64_t> dims{v.shape()[0]};
  for (int i = 2; i < rank; ++i) dims.push_back(1);
  return reshape(v, Shape(std::move(dims)));
}

}  // namespace

// --- Conv2d ---------------------------------------------------------------------------------

Conv2d::Conv2d(Graph& g, const std::string& layer_name, std::int64_t in_channels, std::int64_t out_channels,
               std::array<std::int64_t, 2> kernel, const Conv2dOptions& conv_options, bool with_bias, DType dtype,
               std::source_location where)
    : options(conv_options), name(layer_name) {
  auto at = g.at(where);
  auto scope = g.scope(layer_name);
  if (in_channels < 1 || out_channels < 1 || conv_options.groups < 1 || in_channels % conv_options.groups != 0 ||
      out_channels % conv_options.groups != 0)
    throw Error(fmt::format("in_channels {} and out_channels {} must be positive multiples of groups {}", in_channels,
                            out_channels, conv_options.groups),
                "conv2d", g.current_scope(), at.where());
  const double fan_in = static_cast<double>(in_channels / conv_options.groups * kernel[0] * kernel[1]);
  const double bound = std::sqrt(6.0 / fan_in);
  weight = g.parameter("weight", dtype, {out_channels, in_channels / conv_options.groups, kernel[0], kernel[1]},
                       init::uniform(-bound, bound));
  if (with_bias) bias = g.parameter("bias", dtype, {out_channels}, init::zeros());
}

Value Conv2d::operator()(Value x, std::source_location where) const {
  if (!x.defined()) throw Error("the input is an undefined Value", "conv2d", name, where);
  auto at = x.graph().at(where);
  auto scope = x.graph().scope(name);
  const Value y = conv2d(x, weight, options);
  return bias.defined() ? y + per_channel(bias, 4) : y;
}

// --- BatchNorm ------------------------------------------------------------------------------

Value batch_norm(Value x, const BatchNormState& s, const Mode& mode, std::source_location where) {
  if (!x.defined()) throw Error("the input is an undefined Value", "batch_norm", "", where);
  Graph& g = x.graph();
  auto at = g.at(where);
  auto scope = g.scope("batch_norm");
  const int rank = x.rank();
  if (rank < 2 || x.shape()[1] != s.gamma.shape()[0])
    throw Error(
        fmt::format("x must be [N, C, ...] with C = {} channels, got {}", s.gamma.shape()[0], x.type().to_string()),
        "batch_norm", g.current_scope(), at.where());
  if (!mode.training) {
    const Value inverse_std = rsqrt(per_channel(s.running_var, rank) + s.eps);
    return (x - per_channel(s.running_mean, rank)) * inverse_std * per_channel(s.gamma, rank) +
           per_channel(s.beta, rank);
  }
  if (!mode.updates)
    throw Error(
        "a training Mode needs `updates` to hold the running statistics' assigns; without them the "
        "running mean and variance would never move",
        "batch_norm", g.current_scope(), at.where());
  double n = static_cast<double>(x.shape()[0]);
  for (int i = 2; i < rank; ++i) n *= static_cast<double>(x.shape()[i]);
  const BatchNormOutputs batch = batch_norm_training(x, s.gamma, s.beta, s.eps);
  // The running statistics follow the batch's, the variance unbiased as PyTorch keeps it; no
  // gradient flows into an update.
  const Value batch_mean = stop_gradient(batch.mean);
  const Value batch_var = stop_gradient(batch.variance) * (n > 1 ? n / (n - 1) : 1.0);
  mode.updates->push_back(assign(s.running_mean, s.running_mean * (1 - s.momentum) + batch_mean * s.momentum));
  mode.updates->push_back(assign(s.running_var, s.running_var * (1 - s.momentum) + batch_var * s.momentum));
  return batch.y;
}

BatchNorm2d::BatchNorm2d(Graph& g, const std::string& layer_name, std::int64_t channels, double momentum, double eps,
                         DType dtype, std::source_location where)
    : name(layer_name) {
  auto at = g.at(where);
  auto scope = g.scope(layer_name);
  if (!(momentum >= 0 && momentum <= 1) || !(eps > 0))
    throw Error(fmt::format("momentum {} must lie in [0, 1] and eps {} must be positive", momentum, eps), "batch_norm",
                g.current_scope(), at.where());
  state.gamma = g.parameter("gamma", dtype, {channels}, init::ones());
  state.beta = g.parameter("beta", dtype, {channels}, init::zeros());
  state.running_mean = g.state("running_mean", dtype, {channels}, init::zeros());
  state.running_var = g.state("running_var", dtype, {channels}, init::ones());
  state.momentum = momentum;
  state.eps = eps;
}

Value BatchNorm2d::operator()(Value x, const Mode& mode, std::source_location where) const {
  if (!x.defined()) throw Error("the input is an undefined Value", "batch_norm", name, where);
  auto at = x.graph().at(where);
  auto scope = x.graph().scope(name);
  return batch_norm(x, state, mode, where);
}

// --- MaxPool2d ------------------------------------------------------------------------------

MaxPool2d::MaxPool2d(std::array<std::int64_t, 2> pool_kernel, const Pool2dOptions& pool_options, std::string layer_name)
    : kernel(pool_kernel), options(pool_options), name(std::move(layer_name)) {}

Value MaxPool2d::operator()(Value x, std::source_location where) const {
  if (!x.defined()) throw Error("the input is an undefined Value", "max_pool2d", name, where);
  auto at = x.graph().at(where);
  auto scope = x.graph().scope(name);
  return max_pool2d(x, kernel, options);
}

}  // namespace fovea::nn

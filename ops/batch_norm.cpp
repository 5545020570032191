#include "fovea/ops/batch_norm.h"

#include <array>
#include <cmath>

#include <fmt/format.h>

#include "fovea/ops/creation.h"
#include "fovea/ops/shape_ops.h"
#include "fovea/ops/vjp.h"

namespace fovea {

namespace {

double eps_of(const InferContext& ctx) {
  const double eps = ctx.attrs().get_float("eps");
  if (!(eps >= 0.0) || !std::isfinite(eps)) ctx.fail(fmt::format("eps must be finite and >= 0, got {}", eps));
  return eps;
}

// Input i is a [C] vector of x's dtype.
void require_channels(const InferContext& ctx, std::size_t i, const char* what, const TensorType& x) {
  const TensorType want{x.dtype, Shape{x.shape[1]}};
  if (ctx.input(i) != want)
    ctx.fail(fmt::format("{} must be {} (one value per channel of x {}), got {}", what, want.to_string(), x.to_string(),
                         ctx.input(i).to_string()));
}

void require_batch(const InferContext& ctx, std::size_t i, const char* what) {
  const TensorType& x = ctx.input(i);
  if (x.shape.rank() < 2) ctx.fail(fmt::format("{} must be [N, C, ...] (rank >= 2), got {}", what, x.to_string()));
  ctx.require_floating(i);
}

// (x, gamma, beta) -> (y, mean, variance)
std::vector<TensorType> infer_batch_norm(const InferContext& ctx) {
  eps_of(ctx);
  require_batch(ctx, 0, "x");
  const TensorType& x = ctx.input(0);
  require_channels(ctx, 1, "gamma", x);
  require_channels(ctx, 2, "beta", x);
  const TensorType stats{x.dtype, Shape{x.shape[1]}};
  return {x, stats, stats};
}

// (dy, x, gamma, mean, variance) -> (dx, dgamma, dbeta)
std::vector<TensorType> infer_batch_norm_backward(const InferContext& ctx) {
  eps_of(ctx);
  require_batch(ctx, 0, "dy");
  const TensorType& dy = ctx.input(0);
  if (ctx.input(1) != dy)
    ctx.fail(fmt::format("x must have dy's type {}, got {}", dy.to_string(), ctx.input(1).to_string()));
  require_channels(ctx, 2, "gamma", dy);
  require_channels(ctx, 3, "mean", dy);
  require_channels(ctx, 4, "variance", dy);
  return {dy, ctx.input(2), ctx.input(2)};
}

// A [C] vector shaped to broadcast along axis 1 of a rank-`rank` tensor.
Value along_channels(Value v, int rank) {
  std::vector<std::int64_t> dims{v.shape()[0]};
  for (int i = 2; i < rank; ++i) dims.push_back(1);
  return reshape(v, Shape(std::move(dims)));
}

// The fused backward for the normalized output, plus the statistics' own gradients when a
// gradient flows into them: ∂μ/∂x = 1/n, ∂σ²/∂x = 2(x - μ)/n.
std::vector<Value> vjp_batch_norm(const VjpContext& c) {
  const double eps = c.attrs().get_float("eps");
  const Value &x = c.x(0), &gamma = c.x(1);
  Value dy = c.g(0);
  if (!dy.defined()) dy = zeros_like(x);
  BatchNormGradients g = batch_norm_backward(dy, x, gamma, c.y(1), c.y(2), eps);
  const double n = static_cast<double>(x.shape().numel() / std::max<std::int64_t>(1, x.shape()[1]));
  if (c.g(1).defined()) g.dx = g.dx + along_channels(c.g(1), x.rank()) * (1.0 / n);
  if (c.g(2).defined())
    g.dx = g.dx + along_channels(c.g(2), x.rank()) * (x - along_channels(c.y(1), x.rank())) * (2.0 / n);
  return {g.dx, g.dgamma, g.dbeta};
}

Graph& graph_of(const Value& first, std::string_view op, SourceLoc where) {
  if (!first.defined()) throw Error("input 0 is an undefined Value", std::string(op), "", where);
  return first.graph();
}

}  // namespace

BatchNormParams BatchNormParams::decode(const DecodeContext& context) {
  const Shape& x = context.inputs[0].shape;  // x, or dy of x's shape
  BatchNormParams p{context.attrs.get_float("eps"), x[0], x[1], 1};
  for (int i = 2; i < x.rank(); ++i) p.inner *= x[i];
  return p;
}

namespace ops {
const OpDef batch_norm{.name = "batch_norm",
                       .min_inputs = 3,
                       .max_inputs = 3,
                       .infer = infer_batch_norm,
                       .vjp = vjp_batch_norm,
                       .decode = decode_as<BatchNormParams>};
// No gradient rule: a second derivative through a training batch norm is an error.
const OpDef batch_norm_backward{.name = "batch_norm_backward",
                                .min_inputs = 5,
                                .max_inputs = 5,
                                .infer = infer_batch_norm_backward,
                                .decode = decode_as<BatchNormParams>};
}  // namespace ops

BatchNormOutputs batch_norm_training(Value x, Value gamma, Value beta, double eps, Loc where) {
  const std::array<Value, 3> in{x, gamma, beta};
  const std::vector<Value> out =
      graph_of(x, ops::batch_norm.name, where).apply(ops::batch_norm, in, {{"eps", eps}}, where);
  return {out[0], out[1], out[2]};
}

BatchNormGradients batch_norm_backward(Value dy, Value x, Value gamma, Value mean, Value variance, double eps,
                                       Loc where) {
  const std::array<Value, 5> in{dy, x, gamma, mean, variance};
  const std::vector<Value> out =
      graph_of(dy, ops::batch_norm_backward.name, where).apply(ops::batch_norm_backward, in, {{"eps", eps}}, where);
  return {out[0], out[1], out[2]};
}

}  // namespace fovea

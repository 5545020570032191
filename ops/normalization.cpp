#include "fovea/ops/normalization.h"

#include <array>
#include <cmath>

#include <fmt/format.h>

#include "fovea/ops/vjp.h"

namespace fovea {

namespace {

// --- Shape rules ------------------------------------------------------------------------------

// x [..., n] of a float dtype: the input every op of the family normalises along its last axis.
void require_rows(const InferContext& ctx, std::size_t i, const char* what) {
  ctx.require_floating(i);
  if (ctx.input(i).shape.rank() < 1)
    ctx.fail(fmt::format("{} must have rank >= 1 (the op works along the last axis), got {}", what,
                         ctx.input(i).to_string()));
}

// x's shape with the last dim dropped ([B, T, C] -> [B, T]) or set to 1 ([B, T, 1]).
Shape without_last(const Shape& s) { return Shape(std::span(s.dims()).first(static_cast<std::size_t>(s.rank() - 1))); }
Shape last_as_one(const Shape& s) {
  std::vector<std::int64_t> dims = s.dims();
  dims.back() = 1;
  return Shape(std::move(dims));
}
std::int64_t last_dim(const Shape& s) { return s[s.rank() - 1]; }

void require_type(const InferContext& ctx, std::size_t i, const char* what, const TensorType& want) {
  if (ctx.input(i) != want)
    ctx.fail(fmt::format("{} must be {} (from input 0, {}), got {}", what, want.to_string(), ctx.input(0).to_string(),
                         ctx.input(i).to_string()));
}

// (x) -> (y): softmax and log-softmax.
std::vector<TensorType> infer_row_normalization(const InferContext& ctx) {
  require_rows(ctx, 0, "x");
  return {ctx.input(0)};
}

// (y, dy) -> (dx): both backwards of the softmax pair.
std::vector<TensorType> infer_row_normalization_backward(const InferContext& ctx) {
  require_rows(ctx, 0, "y");
  require_type(ctx, 1, "dy", ctx.input(0));
  return {ctx.input(0)};
}

double epsilon_of(const InferContext& ctx) {
  const double eps = ctx.attrs().get_float("eps");
  if (!(eps >= 0.0) || !std::isfinite(eps)) ctx.fail(fmt::format("eps must be finite and >= 0, got {}", eps));
  return eps;
}

// gamma or beta: [D], x's dtype.
void require_affine(const InferContext& ctx, std::size_t i, const char* what, const TensorType& x) {
  const TensorType want{x.dtype, Shape{last_dim(x.shape)}};
  if (ctx.input(i) != want)
    ctx.fail(fmt::format("{} must be {} (one value per feature of the last axis of x {}), got {}", what,
                         want.to_string(), x.to_string(), ctx.input(i).to_string()));
}

// (x, gamma, beta) -> (y, mean, rstd)
std::vector<TensorType> infer_layer_norm(const InferContext& ctx) {
  epsilon_of(ctx);
  require_rows(ctx, 0, "x");
  const TensorType& x = ctx.input(0);
  require_affine(ctx, 1, "gamma", x);
  require_affine(ctx, 2, "beta", x);
  const TensorType stats{x.dtype, last_as_one(x.shape)};
  return {x, stats, stats};
}

// (dy, x, gamma, mean, rstd) -> (dx, dgamma, dbeta)
std::vector<TensorType> infer_layer_norm_backward(const InferContext& ctx) {
  require_rows(ctx, 0, "dy");
  const TensorType& dy = ctx.input(0);
  require_type(ctx, 1, "x", dy);
  require_affine(ctx, 2, "gamma", dy);
  const TensorType stats{dy.dtype, last_as_one(dy.shape)};
  require_type(ctx, 3, "mean", stats);
  require_type(ctx, 4, "rstd", stats);
  return {dy, ctx.input(2), ctx.input(2)};
}

double label_smoothing_of(const InferContext& ctx) {
  const double eps = ctx.attrs().get_float("label_smoothing");
  if (!(eps >= 0.0 && eps <= 1.0)) ctx.fail(fmt::format("label_smoothing must lie in [0, 1], got {}", eps));
  return eps;
}

// logits [..., C] with C >= 1 and targets [...] of an integer dtype: the per-example type [...].
TensorType check_logits_and_targets(const InferContext& ctx) {
  label_smoothing_of(ctx);
  require_rows(ctx, 0, "logits");
  const TensorType &logits = ctx.input(0), &targets = ctx.input(1);
  if (last_dim(logits.shape) < 1)
    ctx.fail(fmt::format("logits {} have no class (the last dim is 0); cross-entropy needs at least one",
                         logits.to_string()));
  if (!is_integer(targets.dtype))
    ctx.fail(fmt::format("targets must be integer class indices (i32 or i64), got {}", targets.to_string()));
  const Shape batch = without_last(logits.shape);
  if (targets.shape != batch)
    ctx.fail(fmt::format("targets must have the logits' shape without the class dim, {}, for logits {}; got {}",
                         batch.to_string(), logits.to_string(), targets.to_string()));
  return TensorType{logits.dtype, batch};
}

// (logits, targets) -> (loss, lse)
std::vector<TensorType> infer_cross_entropy(const InferContext& ctx) {
  const TensorType per_example = check_logits_and_targets(ctx);
  return {per_example, per_example};
}

// (logits, targets, lse, dloss) -> (dlogits)
std::vector<TensorType> infer_cross_entropy_backward(const InferContext& ctx) {
  const TensorType per_example = check_logits_and_targets(ctx);
  require_type(ctx, 2, "lse", per_example);
  require_type(ctx, 3, "dloss", per_example);
  return {ctx.input(0)};
}

// --- Gradient rules ---------------------------------------------------------------------------

// Outputs other than 0 are saved statistics: fails when a gradient flows into one of them.
void require_only_main_output(const VjpContext& c, const char* saved) {
  for (std::size_t k = 1; k < c.output_grads.size(); ++k)
    if (c.g(k).defined())
      c.node.fail(
          fmt::format("a gradient flows into output {} ({}), but only output 0 is differentiable: it is saved "
                      "for the backward pass; compute it with ordinary ops to differentiate it",
                      k, saved));
}

// ∂ softmax:  dx = y ⊙ (ḡ - Σ ḡ ⊙ y)
std::vector<Value> vjp_softmax(const VjpContext& c) { return {fused_softmax_backward(c.y(), c.g())}; }
// ∂ log softmax:  dx = ḡ - exp(y)·Σ ḡ
std::vector<Value> vjp_log_softmax(const VjpContext& c) { return {fused_log_softmax_backward(c.y(), c.g())}; }

// ∂ layer norm: one backward node from the saved statistics.
std::vector<Value> vjp_layer_norm(const VjpContext& c) {
  require_only_main_output(c, "the row means and reciprocal standard deviations");
  const FusedLayerNormGradients g = fused_layer_norm_backward(c.g(0), c.x(0), c.x(1), c.y(1), c.y(2));
  return {g.dx, g.dgamma, g.dbeta};
}

// ∂ cross-entropy: dlogits from the saved lse; the targets get none.
std::vector<Value> vjp_cross_entropy(const VjpContext& c) {
  require_only_main_output(c, "the log-sum-exp of each row");
  return {fused_softmax_cross_entropy_backward(c.x(0), c.x(1), c.y(1), c.g(0), c.attrs().get_float("label_smoothing")),
          Value{}};
}

Graph& graph_of(const Value& first, std::string_view op, SourceLoc where) {
  if (!first.defined()) throw Error("input 0 is an undefined Value", std::string(op), "", where);
  return first.graph();
}

}  // namespace

namespace ops {
const OpDef fused_softmax{
    .name = "fused_softmax", .min_inputs = 1, .max_inputs = 1, .infer = infer_row_normalization, .vjp = vjp_softmax};
const OpDef fused_log_softmax{.name = "fused_log_softmax",
                              .min_inputs = 1,
                              .max_inputs = 1,
                              .infer = infer_row_normalization,
                              .vjp = vjp_log_softmax};
const OpDef fused_layer_norm{.name = "fused_layer_norm",
                             .min_inputs = 3,
                             .max_inputs = 3,
                             .infer = infer_layer_norm,
                             .vjp = vjp_layer_norm,
                             .decode = decode_as<LayerNormParams>};
const OpDef fused_softmax_cross_entropy{.name = "fused_softmax_cross_entropy",
                                        .min_inputs = 2,
                                        .max_inputs = 2,
                                        .infer = infer_cross_entropy,
                                        .vjp = vjp_cross_entropy,
                                        .decode = decode_as<CrossEntropyParams>};
// The backward ops have no gradient rule: a second derivative through them raises fovea::Error.
const OpDef fused_softmax_backward{
    .name = "fused_softmax_backward", .min_inputs = 2, .max_inputs = 2, .infer = infer_row_normalization_backward};
const OpDef fused_log_softmax_backward{
    .name = "fused_log_softmax_backward", .min_inputs = 2, .max_inputs = 2, .infer = infer_row_normalization_backward};
const OpDef fused_layer_norm_backward{
    .name = "fused_layer_norm_backward", .min_inputs = 5, .max_inputs = 5, .infer = infer_layer_norm_backward};
const OpDef fused_softmax_cross_entropy_backward{.name = "fused_softmax_cross_entropy_backward",
                                                 .min_inputs = 4,
                                                 .max_inputs = 4,
                                                 .infer = infer_cross_entropy_backward,
                                                 .decode = decode_as<CrossEntropyParams>};
}  // namespace ops

LayerNormParams LayerNormParams::decode(const DecodeContext& context) { return {context.attrs.get_float("eps")}; }

CrossEntropyParams CrossEntropyParams::decode(const DecodeContext& context) {
  return {context.attrs.get_float("label_smoothing")};
}

Value fused_softmax(Value x, Loc where) {
  const std::array<Value, 1> in{x};
  return graph_of(x, ops::fused_softmax.name, where).apply1(ops::fused_softmax, in, {}, where);
}

Value fused_softmax_backward(Value y, Value dy, Loc where) {
  const std::array<Value, 2> in{y, dy};
  return graph_of(y, ops::fused_softmax_backward.name, where).apply1(ops::fused_softmax_backward, in, {}, where);
}

Value fused_log_softmax(Value x, Loc where) {
  const std::array<Value, 1> in{x};
  return graph_of(x, ops::fused_log_softmax.name, where).apply1(ops::fused_log_softmax, in, {}, where);
}

Value fused_log_softmax_backward(Value y, Value dy, Loc where) {
  const std::array<Value, 2> in{y, dy};
  return graph_of(y, ops::fused_log_softmax_backward.name, where)
      .apply1(ops::fused_log_softmax_backward, in, {}, where);
}

FusedLayerNormOutputs fused_layer_norm(Value x, Value gamma, Value beta, double eps, Loc where) {
  const std::array<Value, 3> in{x, gamma, beta};
  const std::vector<Value> out =
      graph_of(x, ops::fused_layer_norm.name, where).apply(ops::fused_layer_norm, in, {{"eps", eps}}, where);
  return {out[0], out[1], out[2]};
}

FusedLayerNormGradients fused_layer_norm_backward(Value dy, Value x, Value gamma, Value mean, Value rstd, Loc where) {
  const std::array<Value, 5> in{dy, x, gamma, mean, rstd};
  const std::vector<Value> out =
      graph_of(dy, ops::fused_layer_norm_backward.name, where).apply(ops::fused_layer_norm_backward, in, {}, where);
  return {out[0], out[1], out[2]};
}

FusedCrossEntropyOutputs fused_softmax_cross_entropy(Value logits, Value targets, double label_smoothing, Loc where) {
  const std::array<Value, 2> in{logits, targets};
  const std::vector<Value> out =
      graph_of(logits, ops::fused_softmax_cross_entropy.name, where)
          .apply(ops::fused_softmax_cross_entropy, in, {{"label_smoothing", label_smoothing}}, where);
  return {out[0], out[1]};
}

Value fused_softmax_cross_entropy_backward(Value logits, Value targets, Value lse, Value dloss, double label_smoothing,
                                           Loc where) {
  const std::array<Value, 4> in{logits, targets, lse, dloss};
  return graph_of(logits, ops::fused_softmax_cross_entropy_backward.name, where)
      .apply1(ops::fused_softmax_cross_entropy_backward, in, {{"label_smoothing", label_smoothing}}, where);
}

}  // namespace fovea

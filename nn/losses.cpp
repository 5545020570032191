#include "fovea/nn/losses.h"

#include <fmt/format.h>

#include "fovea/autograd/grad.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/reduce.h"
#include "fovea/ops/shape_ops.h"

namespace fovea::nn {

Value log_softmax(Value x, std::int64_t axis, std::source_location where) {
  if (!x.defined()) throw Error("the logits are an undefined Value", "log_softmax", "", where);
  auto at = x.graph().at(where);
  // The max is a constant shift: the result does not depend on it, so no gradient needs to
  // flow through it (and reduce_max's gradient would only add zeros).
  const Value shifted = x - stop_gradient(reduce_max(x, {axis}, true));
  return shifted - log(reduce_sum(exp(shifted), {axis}, true));
}

// A row whose every entry is -∞ (a fully masked attention row) has no softmax: Σ exp is 0. It is
// defined as 0 everywhere, as fused_softmax and fused_attention define it, by two guards that
// change nothing for any other row:
//
//   m = max(reduce_max(x), lowest)   -∞ - m would be NaN; with m finite, e = exp(-∞ - m) = 0
//   y = e / (s == 0 ? 1 : s)         0/0 would be NaN; any other row has s >= 1 (its max gives e^0)
//
// Their gradients are 0 on such a row too: every e is 0, and the guard's 1 is a constant.
Value softmax(Value x, std::int64_t axis, std::source_location where) {
  if (!x.defined()) throw Error("the logits are an undefined Value", "softmax", "", where);
  auto at = x.graph().at(where);
  const Value lowest = scalar_like(x, lowest_finite(x.dtype()));
  const Value row_max = maximum(reduce_max(x, {axis}, true), lowest);
  const Value e = exp(x - stop_gradient(row_max));
  const Value s = reduce_sum(e, {axis}, true);
  const Value nonzero_s = fovea::where(equal(s, scalar_like(s, 0.0)), scalar_like(s, 1.0), s);
  return e / nonzero_s;
}

Value one_hot(Value indices, std::int64_t classes, DType dtype, std::source_location where) {
  if (!indices.defined()) throw Error("the indices are an undefined Value", "one_hot", "", where);
  auto at = indices.graph().at(where);
  if (!is_integer(indices.dtype()))
    throw Error(fmt::format("indices must be i32 or i64, got {}", indices.type().to_string()), "one_hot",
                indices.name(), at.where());
  std::vector<std::int64_t> dims = indices.shape().dims();
  dims.push_back(classes);
  const Value columns = iota(indices.graph(), Shape(dims), -1, indices.dtype());
  return cast(equal(columns, unsqueeze(indices, -1)), dtype);
}

// The checks cross_entropy makes before it builds anything: each names the user's line `where`.
static void check_cross_entropy(Value logits, Value targets, SourceLoc where) {
  if (!is_floating(logits.dtype()))
    throw Error(fmt::format("logits must be f32 or f64, got {}", logits.type().to_string()), "cross_entropy",
                logits.name(), where);
  if (!is_integer(targets.dtype()))
    throw Error(fmt::format("targets must be integer class indices (i32 or i64), got {}", targets.type().to_string()),
                "cross_entropy", targets.name(), where);
  const Shape& ls = logits.shape();
  std::vector<std::int64_t> batch(ls.dims().begin(), ls.dims().end() - (ls.rank() > 0 ? 1 : 0));
  if (ls.rank() < 1 || Shape(batch) != targets.shape())
    throw Error(fmt::format("logits {} and targets {} do not match: targets must have the logits' shape without "
                            "the last (class) dim",
                            logits.type().to_string(), targets.type().to_string()),
                "cross_entropy", logits.name(), where);
}

Value cross_entropy(Value logits, Value targets, const CrossEntropyOptions& o, std::source_location where) {
  if (!logits.defined() || !targets.defined()) throw Error("an undefined Value was passed", "cross_entropy", "", where);
  auto at = logits.graph().at(where);
  check_cross_entropy(logits, targets, at.where());
  const std::int64_t classes = logits.shape()[logits.rank() - 1];

  // A target outside [0, C) that is not the ignore_index would match no column and count as a zero
  // loss: it is a mistake in the data, and raises fovea::Error when the graph runs.
  targets = check_indices(targets, classes, o.ignore_index, "target class", "the ignore_index");
  const Value logp = log_softmax(logits, -1);
  // -log p[target] picked with a one-hot mask (an ignored target matches no column).
  const Value picked = reduce_sum(logp * one_hot(targets, classes, logits.dtype()), {-1}, false);
  Value per_example = -picked;
  if (o.label_smoothing > 0) {
    // (1-ε)·(-log p[target]) + ε·mean_c(-log p[c])
    const Value uniform = -reduce_mean(logp, {-1}, false);
    per_example = per_example * (1 - o.label_smoothing) + uniform * o.label_smoothing;
  }
  const Value valid =
      cast(not_equal(targets, scalar_like(targets, static_cast<double>(o.ignore_index))), logits.dtype());
  const Value total = reduce_sum(per_example * valid, {}, false);
  const Value count = maximum(reduce_sum(valid, {}, false), scalar_like(total, 1.0));
  return total / count;
}

Value mse_loss(Value prediction, Value target, std::source_location where) {
  if (!prediction.defined()) throw Error("the prediction is an undefined Value", "mse_loss", "", where);
  auto at = prediction.graph().at(where);
  const Value d = prediction - target;
  return reduce_mean(d * d, {}, false);
}

}  // namespace fovea::nn

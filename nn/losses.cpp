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
  // The max is a constant shift: the result does not depend on it, so no gradient needs to
  // flow through it (and reduce_max's gradient would only add zeros).
  const Value shifted = sub(x, stop_gradient(reduce_max(x, {axis}, true, where), where), where);
  return sub(shifted, log(reduce_sum(exp(shifted, where), {axis}, true, where), where), where);
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
  const Value lowest = scalar_like(x, lowest_finite(x.dtype()), where);
  const Value row_max = maximum(reduce_max(x, {axis}, true, where), lowest, where);
  const Value e = exp(sub(x, stop_gradient(row_max, where), where), where);
  const Value s = reduce_sum(e, {axis}, true, where);
  const Value nonzero_s =
      fovea::where(equal(s, scalar_like(s, 0.0, where), where), scalar_like(s, 1.0, where), s, where);
  return div(e, nonzero_s, where);
}

Value one_hot(Value indices, std::int64_t classes, DType dtype, std::source_location where) {
  if (!is_integer(indices.dtype()))
    throw Error(fmt::format("indices must be i32 or i64, got {}", indices.type().to_string()), "one_hot",
                indices.name(), where);
  std::vector<std::int64_t> dims = indices.shape().dims();
  dims.push_back(classes);
  const Value columns = iota(indices.graph(), Shape(dims), -1, indices.dtype(), where);
  return cast(equal(columns, unsqueeze(indices, -1, where), where), dtype, where);
}

Value cross_entropy(Value logits, Value targets, const CrossEntropyOptions& o, std::source_location where) {
  const SourceLoc loc(where);
  if (!logits.defined() || !targets.defined()) throw Error("an undefined Value was passed", "cross_entropy", "", loc);
  if (!is_floating(logits.dtype()))
    throw Error(fmt::format("logits must be f32 or f64, got {}", logits.type().to_string()), "cross_entropy",
                logits.name(), loc);
  if (!is_integer(targets.dtype()))
    throw Error(fmt::format("targets must be integer class indices (i32 or i64), got {}", targets.type().to_string()),
                "cross_entropy", targets.name(), loc);
  const Shape& ls = logits.shape();
  std::vector<std::int64_t> batch(ls.dims().begin(), ls.dims().end() - (ls.rank() > 0 ? 1 : 0));
  if (ls.rank() < 1 || Shape(batch) != targets.shape())
    throw Error(fmt::format("logits {} and targets {} do not match: targets must have the logits' shape without "
                            "the last (class) dim",
                            logits.type().to_string(), targets.type().to_string()),
                "cross_entropy", logits.name(), loc);
  const std::int64_t classes = ls[ls.rank() - 1];

  // A target outside [0, C) that is not the ignore_index would match no column and count as a zero
  // loss: it is a mistake in the data, and raises fovea::Error when the graph runs.
  targets = check_indices(targets, classes, o.ignore_index, "target class", "the ignore_index", where);
  const Value logp = log_softmax(logits, -1, where);
  // -log p[target] picked with a one-hot mask (an ignored target matches no column).
  const Value picked =
      reduce_sum(mul(logp, one_hot(targets, classes, logits.dtype(), where), where), {-1}, false, where);
  Value per_example = neg(picked, where);
  if (o.label_smoothing > 0) {
    // (1-ε)·(-log p[target]) + ε·mean_c(-log p[c])
    const Value uniform = neg(reduce_mean(logp, {-1}, false, where), where);
    per_example = add(mul(per_example, scalar_like(per_example, 1 - o.label_smoothing, where), where),
                      mul(uniform, scalar_like(uniform, o.label_smoothing, where), where), where);
  }
  const Value valid = cast(not_equal(targets, scalar_like(targets, static_cast<double>(o.ignore_index), where), where),
                           logits.dtype(), where);
  const Value total = reduce_sum(mul(per_example, valid, where), {}, false, where);
  const Value count = maximum(reduce_sum(valid, {}, false, where), scalar_like(total, 1.0, where), where);
  return div(total, count, where);
}

Value mse_loss(Value prediction, Value target, std::source_location where) {
  const Value d = sub(prediction, target, where);
  return reduce_mean(mul(d, d, where), {}, false, where);
}

}  // namespace fovea::nn

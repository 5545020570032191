// ONNX's reductions: ReduceSum/Mean/Max/Min/Prod, the compositions ReduceL1/L2/LogSum/
// LogSumExp/SumSquare, ArgMax/ArgMin and CumSum.
#include <numeric>

#include <fmt/format.h>

#include "fovea/onnx/converter.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/reduce.h"
#include "fovea/ops/shape_ops.h"

namespace fovea::onnx {

namespace {

// The axes to reduce and whether to keep them, from the node: an attribute up to version 13
// (ReduceSum's became an input in 13), an empty list meaning every axis unless
// noop_with_empty_axes says the node is then the identity (std::nullopt).
struct Reduction {
  std::vector<std::int64_t> axes;
  bool keepdims = true;
  bool identity = false;
};

Reduction reduction_of(NodeContext& ctx, const Value& x, bool axes_are_input) {
  Reduction r;
  r.keepdims = ctx.attribute_int("keepdims", 1) != 0;
  bool noop = false;
  if (axes_are_input) {
    noop = ctx.attribute_int("noop_with_empty_axes", 0) != 0;
    if (ctx.has_input(1)) r.axes = ctx.constant_ints(1);
  } else {
    r.axes = ctx.attribute_ints("axes", std::vector<std::int64_t>{});
  }
  if (r.axes.empty()) {
    if (noop) r.identity = true;
    r.axes.resize(static_cast<std::size_t>(x.rank()));
    std::iota(r.axes.begin(), r.axes.end(), 0);
  }
  for (auto& a : r.axes) a = normalize_axis(ctx, a, x.rank());
  return r;
}

using ReduceFn = Value (*)(Value, std::vector<std::int64_t>, bool, Loc);

// A reduction whose ONNX op maps to one Fovea reduction, with its input and output mapped by
// `before` and `after` (ReduceL2 is sqrt after a sum of squares).
template <ReduceFn reduce, int kind>
std::vector<Value> reduction(NodeContext& ctx) {
  Value x = ctx.input(0);
  const bool axes_are_input = ctx.op_type() == "ReduceSum" && ctx.version() >= 13;
  const Reduction r = reduction_of(ctx, x, axes_are_input);
  if (r.identity) return {x};
  switch (kind) {
    case 1:
      x = abs(x);
      break;  // L1
    case 2:
      x = x * x;
      break;   // L2, SumSquare
    case 3: {  // LogSumExp: max + log Σ exp(x - max), stable
      const Value top = reduce_max(x, r.axes, true);
      const Value safe = where(equal(top, top), top, zeros_like(top));  // a row of NaN stays NaN
      Value out = log(reduce_sum(exp(x - safe), r.axes, true)) + safe;
      return {r.keepdims ? out : squeeze(out, r.axes)};
    }
    default:
      break;
  }
  Value out = reduce(x, r.axes, r.keepdims, Loc::current());
  if (ctx.op_type() == "ReduceL2") out = sqrt(out);
  if (ctx.op_type() == "ReduceLogSum") out = log(out);
  return {out};
}

// ArgMax and ArgMin: the index along one axis, i64; ties to the first index unless
// select_last_index (version 12) says the last.
template <bool max>
std::vector<Value> arg_reduction(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const std::int64_t axis = normalize_axis(ctx, ctx.attribute_int("axis", 0), x.rank());
  const bool keepdims = ctx.attribute_int("keepdims", 1) != 0;
  const bool last = ctx.version() >= 12 && ctx.attribute_int("select_last_index", 0) != 0;
  return {max ? argmax(x, axis, keepdims, last) : argmin(x, axis, keepdims, last)};
}

std::vector<Value> cumulative_sum(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const std::int64_t axis = normalize_axis(ctx, static_cast<std::int64_t>(ctx.constant_number(1)), x.rank());
  const bool exclusive = ctx.attribute_int("exclusive", 0) != 0;
  const bool reverse = ctx.attribute_int("reverse", 0) != 0;
  return {cumsum(x, axis, exclusive, reverse)};
}

}  // namespace

void add_reduction_converters(ConverterTable& table) {
  const ConverterEntry rows[] = {
      {"ReduceSum", 1, reduction<reduce_sum, 0>},
      {"ReduceMean", 1, reduction<reduce_mean, 0>},
      {"ReduceMax", 1, reduction<reduce_max, 0>},
      {"ReduceMin", 1, reduction<reduce_min, 0>},
      {"ReduceProd", 1, reduction<reduce_prod, 0>},
      {"ArgMax", 1, arg_reduction<true>},
      {"ArgMin", 1, arg_reduction<false>},
      {"CumSum", 11, cumulative_sum},
      {"ReduceL1", 1, reduction<reduce_sum, 1>},
      {"ReduceL2", 1, reduction<reduce_sum, 2>},
      {"ReduceSumSquare", 1, reduction<reduce_sum, 2>},
      {"ReduceLogSum", 1, reduction<reduce_sum, 0>},
      {"ReduceLogSumExp", 1, reduction<reduce_sum, 3>},
  };
  for (const ConverterEntry& row : rows) table.emplace(row.op_type, row);
}

}  // namespace fovea::onnx

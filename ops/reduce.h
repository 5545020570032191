// Reductions over axes: sum, max, and mean (a composition of sum).
//
//   reduce_sum(x, {1})            f32[32,10]  -> f32[32]
//   reduce_max(x, {-1}, true)     f32[4,5,6]  -> f32[4,5,1]
//   reduce_mean(x)                f32[4,5,6]  -> f32[]       (empty axes: every axis)
//
// Axes may be negative (-1 is the last); a duplicate or out-of-range axis is an error at the
// user's line. The primitive nodes store the axes normalised and sorted, so that two spellings
// of one reduction ({-1} and {2} on a rank-3 input) build equal nodes.
//
// Reducing a zero-size axis: the sum of no elements is 0; the maximum of no elements is
// undefined and rejected when the node is built; the mean of no elements is 0/0 = NaN.
#pragma once

#include <cstdint>
#include <vector>

#include "fovea/ops/elementwise.h"

namespace fovea {

// y = Σ over `axes` of x. Numeric dtypes; f32 sums are accumulated in f64.
Value reduce_sum(Value x, std::vector<std::int64_t> axes = {}, bool keepdims = false, Loc where = Loc::current());
// y = max over `axes` of x. Numeric dtypes; a NaN anywhere in a reduced set makes its result NaN.
Value reduce_max(Value x, std::vector<std::int64_t> axes = {}, bool keepdims = false, Loc where = Loc::current());
// y = (1/n) Σ over `axes` of x, with n the number of reduced elements. Floating dtypes only.
Value reduce_mean(Value x, std::vector<std::int64_t> axes = {}, bool keepdims = false, Loc where = Loc::current());

// The primitive ops. Attributes: axes (normalised, sorted int list), keepdims (bool); the
// kernels read them decoded (core/op.h).
struct ReduceParams {
  std::vector<std::int64_t> axes;  // sorted, each in [0, rank)
  bool keepdims = false;
  static ReduceParams decode(const DecodeContext& context);
};
namespace ops {
extern const OpDef reduce_sum, reduce_max;
}  // namespace ops

}  // namespace fovea

// Reductions over axes: sum, max, min, product, and mean (a composition of sum); the index of
// the maximum or minimum along one axis; running sums along one axis.
//
//   reduce_sum(x, {1})            f32[32,10]  -> f32[32]
//   reduce_max(x, {-1}, true)     f32[4,5,6]  -> f32[4,5,1]
//   reduce_mean(x)                f32[4,5,6]  -> f32[]       (empty axes: every axis)
//   argmax(x, -1)                 f32[4,5,6]  -> i64[4,5]
//   cumsum(x, 1)                  f32[4,5,6]  -> f32[4,5,6]
//
// Axes may be negative (-1 is the last); a duplicate or out-of-range axis is an error at the
// user's line. The primitive nodes store the axes normalised and sorted, so that two spellings
// of one reduction ({-1} and {2} on a rank-3 input) build equal nodes.
//
// Reducing a zero-size axis: the sum of no elements is 0 and their product 1; the maximum and
// the minimum of no elements, and the index of either, are undefined and rejected when the
// node is built (unless the output has no elements); the mean of no elements is 0/0 = NaN.
#pragma once

#include <cstdint>
#include <vector>

#include "fovea/ops/elementwise.h"

namespace fovea {

// y = Σ over `axes` of x. Numeric dtypes; f32 sums are accumulated in f64.
Value reduce_sum(Value x, std::vector<std::int64_t> axes = {}, bool keepdims = false, Loc where = Loc::current());
// y = max over `axes` of x. Numeric dtypes; a NaN anywhere in a reduced set makes its result NaN.
Value reduce_max(Value x, std::vector<std::int64_t> axes = {}, bool keepdims = false, Loc where = Loc::current());
// y = min over `axes` of x. Numeric dtypes; a NaN anywhere in a reduced set makes its result NaN.
// Its gradient goes to the minimal elements, shared evenly among ties (as reduce_max's).
Value reduce_min(Value x, std::vector<std::int64_t> axes = {}, bool keepdims = false, Loc where = Loc::current());
// y = Π over `axes` of x. Numeric dtypes; f32 products are accumulated in f64, integer ones wrap
// around. Its gradient is exact where x has zeros (ops/reduce.cpp, vjp_reduce_prod).
Value reduce_prod(Value x, std::vector<std::int64_t> axes = {}, bool keepdims = false, Loc where = Loc::current());
// y = (1/n) Σ over `axes` of x, with n the number of reduced elements. Floating dtypes only.
Value reduce_mean(Value x, std::vector<std::int64_t> axes = {}, bool keepdims = false, Loc where = Loc::current());

// The index (i64) along `axis` of the largest element of x; keepdims keeps `axis` as size 1.
// Numeric dtypes; no gradient. Of tied elements the first wins, or the last with
// select_last_index. A NaN counts as larger than every number and equal to another NaN (as in
// NumPy): the first NaN of a set wins, or its last with select_last_index.
Value argmax(Value x, std::int64_t axis = 0, bool keepdims = false, bool select_last_index = false,
             Loc where = Loc::current());
// The same for the smallest element. A NaN counts as smaller than every number here, so that
// again the first NaN wins (as in NumPy).
Value argmin(Value x, std::int64_t axis = 0, bool keepdims = false, bool select_last_index = false,
             Loc where = Loc::current());

// Running sums along `axis`: y[.., j, ..] = Σ x[.., i, ..] over i <= j, or over i < j when
// `exclusive`, or over i >= j (i > j) when `reverse`. Numeric dtypes; f32 sums are accumulated in
// f64, integer ones wrap around. The gradient is the cumsum of ḡ in the other direction.
Value cumsum(Value x, std::int64_t axis, bool exclusive = false, bool reverse = false, Loc where = Loc::current());

// The primitive reductions over axes: reduce_sum, reduce_max, reduce_min and reduce_prod.
// Attributes: axes (normalised, sorted int list), keepdims (bool); the kernels read them
// decoded (core/op.h).
struct ReduceParams {
  std::vector<std::int64_t> axes;  // sorted, each in [0, rank)
  bool keepdims = false;
  static ReduceParams decode(const DecodeContext& context);
};
// argmax and argmin. Attributes: axis (int, normalised when in range), keepdims and
// select_last_index (bool).
struct ArgReduceParams {
  int axis = 0;  // in [0, rank)
  bool keepdims = false;
  bool select_last_index = false;
  static ArgReduceParams decode(const DecodeContext& context);
};
// cumsum. Attributes: axis (int, normalised when in range), exclusive and reverse (bool).
struct CumsumParams {
  int axis = 0;  // in [0, rank)
  bool exclusive = false;
  bool reverse = false;
  static CumsumParams decode(const DecodeContext& context);
};
namespace ops {
extern const OpDef reduce_sum, reduce_max, reduce_min, reduce_prod, argmax, argmin, cumsum;
}  // namespace ops

}  // namespace fovea

#include "fovea/ops/reduce.h"

#include <algorithm>
#include <array>

#include <fmt/format.h>

#include "fovea/ops/indexing.h"
#include "fovea/ops/shape_ops.h"
#include "fovea/ops/vjp.h"

namespace fovea {

namespace {

// The axes a node stores: every axis when `axes` is empty, otherwise each one normalised
// and the list sorted. Invalid axes are passed through unchanged, so that shape inference
// (which has the node's name for the message) rejects them.
std::vector<std::int64_t> canonical_axes(std::vector<std::int64_t> axes, int rank) {
  if (axes.empty()) {
    for (int i = 0; i < rank; ++i) axes.push_back(i);
    return axes;
  }
  std::vector<std::int64_t> normalised;
  for (std::int64_t a : axes) {
    if (a < -rank || a >= rank) return axes;
    normalised.push_back(a < 0 ? a + rank : a);
  }
  std::sort(normalised.begin(), normalised.end());
  if (std::adjacent_find(normalised.begin(), normalised.end()) != normalised.end()) return axes;
  return normalised;
}

// Which axes of a rank-`rank` input the node reduces, checking range and duplicates.
std::vector<bool> reduced_axes(const InferContext& ctx, int rank) {
  std::vector<bool> reduced(static_cast<std::size_t>(rank), false);
  for (std::int64_t a : ctx.attrs().get_ints("axes")) {
    const int axis = ctx.axis(a, rank);
    if (reduced[static_cast<std::size_t>(axis)])
      ctx.fail(fmt::format("axis {} is listed twice (axes {}) for input {}", a,
                           attribute_to_string(ctx.attrs().get_ints("axes")), ctx.input(0).to_string()));
    reduced[static_cast<std::size_t>(axis)] = true;
  }
  return reduced;
}

// The output type: the input's dims with the reduced ones dropped, or kept as 1.
TensorType reduced_type(const InferContext& ctx, const std::vector<bool>& reduced) {
  const TensorType& x = ctx.input(0);
  const bool keepdims = ctx.attrs().get_bool("keepdims");
  std::vector<std::int64_t> dims;
  for (int i = 0; i < x.shape.rank(); ++i) {
    if (!reduced[static_cast<std::size_t>(i)])
      dims.push_back(x.shape[i]);
    else if (keepdims)
      dims.push_back(1);
  }
  return TensorType{x.dtype, Shape(std::move(dims))};
}

std::vector<TensorType> infer_reduce_sum(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  if (x.dtype == DType::boolean)
    ctx.fail(fmt::format("expects a numeric input, got {}; cast() it first", x.to_string()));
  return {reduced_type(ctx, reduced_axes(ctx, x.shape.rank()))};
}

// max and min: a zero-size reduced axis is rejected whenever the output has elements, which
// would need the extremum of no elements.
std::vector<TensorType> infer_reduce_extremum(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  if (x.dtype == DType::boolean)
    ctx.fail(fmt::format("expects a numeric input, got {}; cast() it first", x.to_string()));
  const std::vector<bool> reduced = reduced_axes(ctx, x.shape.rank());
  const TensorType out = reduced_type(ctx, reduced);
  const char* what = &ctx.op() == &ops::reduce_min ? "minimum" : "maximum";
  for (int i = 0; i < x.shape.rank(); ++i)
    if (reduced[static_cast<std::size_t>(i)] && x.shape[i] == 0 && out.shape.numel() > 0)
      ctx.fail(fmt::format("the {} of an empty set is undefined: axis {} of {} has size 0", what, i, x.to_string()));
  return {out};
}

// argmax, argmin: an i64 index per position of the other axes. As for max, a zero-size axis
// has no index to give, unless the output has no elements.
std::vector<TensorType> infer_arg_reduce(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  if (x.dtype == DType::boolean)
    ctx.fail(fmt::format("expects a numeric input, got {}; cast() it first", x.to_string()));
  const int axis = ctx.axis(ctx.attrs().get_int("axis"), x.shape.rank());
  std::vector<std::int64_t> dims;
  for (int i = 0; i < x.shape.rank(); ++i)
    if (i != axis)
      dims.push_back(x.shape[i]);
    else if (ctx.attrs().get_bool("keepdims"))
      dims.push_back(1);
  const Shape out(std::move(dims));
  if (x.shape[axis] == 0 && out.numel() > 0)
    ctx.fail(fmt::format("the index of the {} of an empty set is undefined: axis {} of {} has size 0",
                         &ctx.op() == &ops::argmin ? "minimum" : "maximum", axis, x.to_string()));
  return {TensorType{DType::i64, out}};
}

// cumsum: x's type, along an axis in range.
std::vector<TensorType> infer_cumsum(const InferContext& ctx) {
  const TensorType& x = ctx.input(0);
  if (x.dtype == DType::boolean)
    ctx.fail(fmt::format("expects a numeric input, got {}; cast() it first", x.to_string()));
  ctx.axis(ctx.attrs().get_int("axis"), x.shape.rank());
  return {x};
}

// The axis as given, or normalised into [0, rank) when it is in range (the printed graph then
// shows one spelling); shape inference reports an out-of-range axis with the node's context.
std::int64_t stored_axis(std::int64_t axis, int rank) {
  if (axis < -rank || axis >= rank) return axis;
  return normalize_axis(static_cast<int>(axis), rank);
}

Value apply_reduce(const OpDef& op, Value x, std::vector<std::int64_t> axes, bool keepdims, SourceLoc where,
                   const std::string& name = "") {
  if (!x.defined()) throw Error("input 0 is an undefined Value", std::string(op.name), "", where);
  Attributes attrs{{"axes", canonical_axes(std::move(axes), x.rank())}, {"keepdims", keepdims}};
  const std::array<Value, 1> in{x};
  return x.graph().apply1(op, in, std::move(attrs), where, name);
}

// A node of an op along one axis (argmax, argmin, cumsum) with its attributes.
Value apply_along_axis(const OpDef& op, Value x, Attributes attrs, SourceLoc where) {
  if (!x.defined()) throw Error("input 0 is an undefined Value", std::string(op.name), "", where);
  const std::array<Value, 1> in{x};
  return x.graph().apply1(op, in, std::move(attrs), where);
}

// --- Gradient rules ----------------------------------------------------------------------
// y = op over the reduced axes of x, ḡ = ∂L/∂y.

// `v` (shaped like the node's output) with the reduced axes present as size 1, so that it
// broadcasts against the input.
Value with_reduced_axes_kept(Value v, const VjpContext& c) {
  if (c.attrs().get_bool("keepdims")) return v;
  std::vector<std::int64_t> dims = c.x(0).shape().dims();
  for (std::int64_t axis : c.attrs().get_ints("axes")) dims[static_cast<std::size_t>(axis)] = 1;
  return reshape(v, Shape(std::move(dims)));
}

// ∂x[k, r] = ḡ[k]: every element of a reduced set contributed once to its sum.
std::vector<Value> vjp_reduce_sum(const VjpContext& c) {
  return {broadcast_to(with_reduced_axes_kept(c.g(), c), c.x(0).shape())};
}

// ∂x[k, r] = ḡ[k]·[x[k, r] = y[k]] / #{r' : x[k, r'] = y[k]}: the gradient goes to the elements
// that are the maximum (or the minimum), shared evenly among ties (a NaN result equals nothing:
// no gradient).
std::vector<Value> vjp_reduce_extremum(const VjpContext& c) {
  const Value x = c.x(0);
  const Value is_extremum = equal(x, with_reduced_axes_kept(c.y(), c));
  const Value zero = scalar_like(x, 0.0);
  const Value ties = reduce_sum(where(is_extremum, scalar_like(x, 1.0), zero), c.attrs().get_ints("axes"), true);
  return {where(is_extremum, with_reduced_axes_kept(c.g(), c) / ties, zero)};
}

// ∂x[k, r] = ḡ[k]·Π_{r' ≠ r} x[k, r'], the product of the other elements of the set. ḡ·y/x would
// divide by zero where x is 0, so the rule counts zeros instead. With x̃ = x where x ≠ 0 and 1
// where x = 0, P[k] = Π_r x̃[k, r] and z[k] the number of zeros in the set, the other elements of
// x[k, r] hold z[k] - [x[k, r] = 0] zeros, so their product is
//
//   P[k] / x̃[k, r]   when z[k] = [x[k, r] = 0]   (no zero among them),   0 otherwise.
//
// This is exact in the number of zeros: one zero sends ḡ·P to that element only, two or more
// send nothing anywhere.
std::vector<Value> vjp_reduce_prod(const VjpContext& c) {
  const Value x = c.x(0);
  const std::vector<std::int64_t> axes = c.attrs().get_ints("axes");
  const Value zero = scalar_like(x, 0.0), one = scalar_like(x, 1.0);
  const Value is_zero = equal(x, zero);
  const Value nonzero = where(is_zero, one, x);
  const Value zeros_here = where(is_zero, one, zero);
  const Value zeros_in_set = reduce_sum(zeros_here, axes, true);
  const Value others = reduce_prod(nonzero, axes, true) / nonzero;
  return {where(equal(zeros_in_set, zeros_here), with_reduced_axes_kept(c.g(), c) * others, zero)};
}

// y = cumsum(x): ∂x[i] = Σ over the j whose sums hold x[i] of ḡ[j], the same running sum of ḡ
// in the other direction (an element of an inclusive sum is in the sums at and after it; of
// an exclusive one, in those strictly after it).
std::vector<Value> vjp_cumsum(const VjpContext& c) {
  return {cumsum(c.g(), c.attrs().get_int("axis"), c.attrs().get_bool("exclusive"), !c.attrs().get_bool("reverse"))};
}

}  // namespace

namespace ops {
const OpDef reduce_sum{.name = "reduce_sum",
                       .min_inputs = 1,
                       .max_inputs = 1,
                       .infer = infer_reduce_sum,
                       .vjp = vjp_reduce_sum,
                       .decode = decode_as<ReduceParams>};
const OpDef reduce_max{.name = "reduce_max",
                       .min_inputs = 1,
                       .max_inputs = 1,
                       .infer = infer_reduce_extremum,
                       .vjp = vjp_reduce_extremum,
                       .decode = decode_as<ReduceParams>};
const OpDef reduce_min{.name = "reduce_min",
                       .min_inputs = 1,
                       .max_inputs = 1,
                       .infer = infer_reduce_extremum,
                       .vjp = vjp_reduce_extremum,
                       .decode = decode_as<ReduceParams>};
// The product of no elements is 1: reduce_sum's type rule fits.
const OpDef reduce_prod{.name = "reduce_prod",
                        .min_inputs = 1,
                        .max_inputs = 1,
                        .infer = infer_reduce_sum,
                        .vjp = vjp_reduce_prod,
                        .decode = decode_as<ReduceParams>};
const OpDef argmax{.name = "argmax",
                   .min_inputs = 1,
                   .max_inputs = 1,
                   .infer = infer_arg_reduce,
                   .differentiable = false,
                   .decode = decode_as<ArgReduceParams>};
const OpDef argmin{.name = "argmin",
                   .min_inputs = 1,
                   .max_inputs = 1,
                   .infer = infer_arg_reduce,
                   .differentiable = false,
                   .decode = decode_as<ArgReduceParams>};
const OpDef cumsum{.name = "cumsum",
                   .min_inputs = 1,
                   .max_inputs = 1,
                   .infer = infer_cumsum,
                   .vjp = vjp_cumsum,
                   .decode = decode_as<CumsumParams>};
}  // namespace ops

ReduceParams ReduceParams::decode(const DecodeContext& context) {
  const int rank = context.inputs[0].shape.rank();
  ReduceParams p{context.attrs.get_ints("axes"), context.attrs.get_bool("keepdims")};
  for (std::int64_t& a : p.axes) a = normalize_axis(static_cast<int>(a), rank);
  std::sort(p.axes.begin(), p.axes.end());
  return p;
}

ArgReduceParams ArgReduceParams::decode(const DecodeContext& context) {
  return {normalize_axis(static_cast<int>(context.attrs.get_int("axis")), context.inputs[0].shape.rank()),
          context.attrs.get_bool("keepdims"), context.attrs.get_bool("select_last_index")};
}

CumsumParams CumsumParams::decode(const DecodeContext& context) {
  return {normalize_axis(static_cast<int>(context.attrs.get_int("axis")), context.inputs[0].shape.rank()),
          context.attrs.get_bool("exclusive"), context.attrs.get_bool("reverse")};
}

Value reduce_sum(Value x, std::vector<std::int64_t> axes, bool keepdims, Loc where) {
  return apply_reduce(ops::reduce_sum, x, std::move(axes), keepdims, where);
}

Value reduce_max(Value x, std::vector<std::int64_t> axes, bool keepdims, Loc where) {
  return apply_reduce(ops::reduce_max, x, std::move(axes), keepdims, where);
}

Value reduce_min(Value x, std::vector<std::int64_t> axes, bool keepdims, Loc where) {
  return apply_reduce(ops::reduce_min, x, std::move(axes), keepdims, where);
}

Value reduce_prod(Value x, std::vector<std::int64_t> axes, bool keepdims, Loc where) {
  return apply_reduce(ops::reduce_prod, x, std::move(axes), keepdims, where);
}

Value argmax(Value x, std::int64_t axis, bool keepdims, bool select_last_index, Loc where) {
  const int rank = x.defined() ? x.rank() : 0;
  return apply_along_axis(
      ops::argmax, x,
      {{"axis", stored_axis(axis, rank)}, {"keepdims", keepdims}, {"select_last_index", select_last_index}}, where);
}

Value argmin(Value x, std::int64_t axis, bool keepdims, bool select_last_index, Loc where) {
  const int rank = x.defined() ? x.rank() : 0;
  return apply_along_axis(
      ops::argmin, x,
      {{"axis", stored_axis(axis, rank)}, {"keepdims", keepdims}, {"select_last_index", select_last_index}}, where);
}

Value cumsum(Value x, std::int64_t axis, bool exclusive, bool reverse, Loc where) {
  const int rank = x.defined() ? x.rank() : 0;
  return apply_along_axis(ops::cumsum, x,
                          {{"axis", stored_axis(axis, rank)}, {"exclusive", exclusive}, {"reverse", reverse}}, where);
}

// Not a primitive: the engine keeps its primitives few (docs/architecture.md, decision 1), and a mean is
// a sum times the constant 1/n. The sum node is named "reduce_mean", so that an error or a
// printed graph still shows what the user asked for.
Value reduce_mean(Value x, std::vector<std::int64_t> axes, bool keepdims, Loc where) {
  if (!x.defined()) throw Error("input 0 is an undefined Value", "reduce_mean", "", where);
  if (!is_floating(x.dtype()))
    throw Error(fmt::format("expects an f32 or f64 input, got {}; cast() it first", x.type().to_string()),
                "reduce_mean", "", x.graph().located(where));
  Value sum = apply_reduce(ops::reduce_sum, x, std::move(axes), keepdims, where, "reduce_mean");
  double count = 1;
  for (std::int64_t axis : sum.node().attrs.get_ints("axes"))
    count *= static_cast<double>(x.shape()[static_cast<int>(axis)]);
  // n == 0 gives 0 · (1/0) = NaN, the mean of no elements.
  return mul(sum, scalar_like(sum, 1.0 / count, where), where);
}

}  // namespace fovea

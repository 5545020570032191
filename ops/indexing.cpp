#include "fovea/ops/indexing.h"

#include <array>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "fovea/ops/creation.h"
#include "fovea/ops/vjp.h"

namespace fovea {

namespace {

void require_index_dtype(const InferContext& ctx, std::size_t i) {
  const DType t = ctx.input(i).dtype;
  if (t != DType::i32 && t != DType::i64)
    ctx.fail(fmt::format("indices (input {}) must be i32 or i64, got {}; use cast() to convert", i,
                         ctx.input(i).to_string()));
}

// x.shape[:axis] + indices.shape + x.shape[axis+1:]
Shape indexed_shape(const Shape& x, const Shape& indices, int axis) {
  std::vector<std::int64_t> dims(x.begin(), x.begin() + axis);
  dims.insert(dims.end(), indices.begin(), indices.end());
  dims.insert(dims.end(), x.begin() + axis + 1, x.end());
  return Shape(std::move(dims));
}

// gather(x, indices) {axis}
std::vector<TensorType> infer_gather(const InferContext& ctx) {
  require_index_dtype(ctx, 1);
  const TensorType& x = ctx.input(0);
  const int axis = ctx.axis(ctx.attrs().get_int("axis"), x.shape.rank());
  return {TensorType{x.dtype, indexed_shape(x.shape, ctx.input(1).shape, axis)}};
}

// scatter_add(target, indices, updates) {axis}
std::vector<TensorType> infer_scatter_add(const InferContext& ctx) {
  const TensorType& target = ctx.input(0);
  const TensorType& updates = ctx.input(2);
  if (target.dtype == DType::boolean)
    ctx.fail(fmt::format("target must be numeric (f32, f64, i32, i64), got {}", target.to_string()));
  require_index_dtype(ctx, 1);
  if (updates.dtype != target.dtype)
    ctx.fail(fmt::format("updates must have the target's dtype {}, got {}; use cast() to convert",
                         dtype_name(target.dtype), updates.to_string()));
  const int axis = ctx.axis(ctx.attrs().get_int("axis"), target.shape.rank());
  const Shape expected = indexed_shape(target.shape, ctx.input(1).shape, axis);
  if (updates.shape != expected)
    ctx.fail(
        fmt::format("updates must have shape {} (target.shape[:axis] + indices.shape + "
                    "target.shape[axis+1:] for target {}, indices {}, axis {}), got {}",
                    TensorType{target.dtype, expected}.to_string(), target.to_string(), ctx.input(1).to_string(), axis,
                    updates.to_string()));
  return {target};
}

// where(cond, a, b): the broadcast of three shapes, naming all three when they disagree.
std::vector<TensorType> infer_where(const InferContext& ctx) {
  const TensorType &cond = ctx.input(0), &a = ctx.input(1), &b = ctx.input(2);
  if (cond.dtype != DType::boolean)
    ctx.fail(fmt::format("cond (input 0) must be bool, got {}; compare with less(), equal(), ... to get one",
                         cond.to_string()));
  if (a.dtype != b.dtype)
    ctx.fail(fmt::format("a and b must have the same dtype, got {} (input 1) and {} (input 2); use cast() to convert",
                         a.to_string(), b.to_string()));
  Shape ab, out;
  if (!broadcast_shapes(a.shape, b.shape, ab) || !broadcast_shapes(cond.shape, ab, out))
    ctx.fail(fmt::format("shapes {} (cond), {} (a) and {} (b) do not broadcast", cond.shape.to_string(),
                         a.shape.to_string(), b.shape.to_string()));
  return {TensorType{a.dtype, out}};
}

// The axis as given, or normalised into [0, rank) when it is in range (the text IR then
// shows one spelling); infer reports an out-of-range axis with the node's context.
std::int64_t stored_axis(std::int64_t axis, int rank) {
  if (axis < -rank || axis >= rank) return axis;
  return normalize_axis(static_cast<int>(axis), rank);
}

void require_defined(std::string_view op, std::initializer_list<Value> inputs, SourceLoc where) {
  int i = 0;
  for (const Value& v : inputs) {
    if (!v.defined()) throw Error(fmt::format("input {} is an undefined Value", i), std::string(op), "", where);
    ++i;
  }
}

// --- Gradient rules ----------------------------------------------------------------------
// ḡ = ∂L/∂out. No gradient flows to the indices or the condition (they are discrete).

// gather picks rows, so each row of x collects the gradients of every place it was picked:
// ∂x = scatter_add(0, ids, ḡ)
std::vector<Value> vjp_gather(const VjpContext& c) {
  const auto axis = c.attrs().get_int("axis");
  return {scatter_add(zeros_like(c.x(0)), c.x(1), c.g(), axis), Value{}};
}

// out = target + scatter(updates):  ∂target = ḡ,  ∂updates = gather(ḡ, ids)
std::vector<Value> vjp_scatter_add(const VjpContext& c) {
  const auto axis = c.attrs().get_int("axis");
  return {c.g(), Value{}, gather(c.g(), c.x(1), axis)};
}

// ∂a = ḡ where cond, else 0;  ∂b = ḡ where not cond, else 0 (each summed back to its shape)
std::vector<Value> vjp_where(const VjpContext& c) {
  const Value cond = c.x(0), g = c.g();
  const Value zero = scalar_like(g, 0.0);
  return {Value{}, unbroadcast(where(cond, g, zero), c.x(1).shape()),
          unbroadcast(where(cond, zero, g), c.x(2).shape())};
}

// check_indices(indices) {count, [allowed], what, allowed_what}: the indices' own type.
std::vector<TensorType> infer_check_indices(const InferContext& ctx) {
  require_index_dtype(ctx, 0);
  if (ctx.attrs().get_int("count") < 0)
    ctx.fail(fmt::format("the count of valid values must be >= 0, got {}", ctx.attrs().get_int("count")));
  ctx.attrs().get_string("what");
  return {ctx.input(0)};
}

// "[1,2]": the multi-index of flat position p in `shape` (0 along a zero dim, where no element is).
std::string position_in(std::int64_t p, const Shape& shape) {
  std::vector<std::int64_t> index(static_cast<std::size_t>(shape.rank()));
  for (int i = shape.rank() - 1; i >= 0; --i) {
    index[static_cast<std::size_t>(i)] = shape[i] > 0 ? p % shape[i] : 0;
    p = shape[i] > 0 ? p / shape[i] : 0;
  }
  return fmt::format("[{}]", fmt::join(index, ","));
}

}  // namespace

namespace ops {
const OpDef check_indices{.name = "check_indices",
                          .min_inputs = 1,
                          .max_inputs = 1,
                          .infer = infer_check_indices,
                          .view = true,
                          .differentiable = false,
                          .decode = decode_as<CheckIndicesParams>};
const OpDef gather{.name = "gather",
                   .min_inputs = 2,
                   .max_inputs = 2,
                   .infer = infer_gather,
                   .vjp = vjp_gather,
                   .decode = decode_as<AxisParams>};
const OpDef scatter_add{.name = "scatter_add",
                        .min_inputs = 3,
                        .max_inputs = 3,
                        .infer = infer_scatter_add,
                        .vjp = vjp_scatter_add,
                        .decode = decode_as<AxisParams>};
const OpDef where{.name = "where",
                  .min_inputs = 3,
                  .max_inputs = 3,
                  .infer = infer_where,
                  .elementwise = true,
                  .key_on_output = true,
                  .vjp = vjp_where};
}  // namespace ops

Value gather(Value x, Value indices, std::int64_t axis, Loc loc) {
  require_defined(ops::gather.name, {x, indices}, loc);
  const std::array<Value, 2> in{x, indices};
  return x.graph().apply1(ops::gather, in, {{"axis", stored_axis(axis, x.rank())}}, loc);
}

Value scatter_add(Value target, Value indices, Value updates, std::int64_t axis, Loc loc) {
  require_defined(ops::scatter_add.name, {target, indices, updates}, loc);
  const std::array<Value, 3> in{target, indices, updates};
  return target.graph().apply1(ops::scatter_add, in, {{"axis", stored_axis(axis, target.rank())}}, loc);
}

Value where(Value cond, Value a, Value b, Loc loc) {
  require_defined(ops::where.name, {cond, a, b}, loc);
  const std::array<Value, 3> in{cond, a, b};
  return cond.graph().apply1(ops::where, in, {}, loc);
}

Value check_indices(Value indices, std::int64_t count, std::optional<std::int64_t> allowed, const std::string& what,
                    const std::string& allowed_what, Loc loc) {
  require_defined(ops::check_indices.name, {indices}, loc);
  const std::array<Value, 1> in{indices};
  Attributes attrs{{"count", count}, {"what", what}};
  if (allowed) {
    attrs.set("allowed", *allowed);
    attrs.set("allowed_what", allowed_what);
  }
  return indices.graph().apply1(ops::check_indices, in, attrs, loc);
}

std::string gather_index_message(const TensorType& x, const TensorType& indices, int axis, std::int64_t position,
                                 std::int64_t index, const char* what) {
  return fmt::format(
      "index {} at position {} of indices {} is out of range for axis {} of {} {}: valid indices are "
      "[0, {})",
      index, position_in(position, indices.shape), indices.to_string(), axis, what, x.to_string(), x.shape[axis]);
}

CheckIndicesParams CheckIndicesParams::decode(const DecodeContext& context) {
  const Attributes& a = context.attrs;
  CheckIndicesParams p{a.get_int("count"), std::nullopt, a.get_string("what"), ""};
  if (a.has("allowed")) {
    p.allowed = a.get_int("allowed");
    p.allowed_what = a.get_string("allowed_what");
  }
  return p;
}

std::string check_indices_message(const CheckIndicesParams& params, const TensorType& indices, std::int64_t position,
                                  std::int64_t value) {
  std::string message = fmt::format("{} {} at position {} of {} is outside [0, {})", params.what, value,
                                    position_in(position, indices.shape), indices.to_string(), params.count);
  if (params.allowed) message += fmt::format(" and is not {} {}", params.allowed_what, *params.allowed);
  return message;
}

}  // namespace fovea

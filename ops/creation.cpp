#include "fovea/ops/creation.h"

#include <array>
#include <limits>

#include <fmt/format.h>

#include "fovea/core/exact_number.h"
#include "fovea/core/philox.h"
#include "fovea/ops/vjp.h"

namespace fovea {

namespace {

// cast(x) {dtype}
std::vector<TensorType> infer_cast(const InferContext& ctx) {
  return {TensorType{ctx.attrs().get_dtype("dtype"), ctx.input(0).shape}};
}

// The declared shape of a source-like op, with negative dims rejected.
Shape declared_shape(const InferContext& ctx) {
  Shape shape(ctx.attrs().get_ints("shape"));
  for (std::int64_t d : shape)
    if (d < 0) ctx.fail(fmt::format("shape {} has a negative dimension", shape.to_string()));
  return shape;
}

// fill() {shape, dtype, value}; the value must be exact in the dtype (core/exact_number.h).
std::vector<TensorType> infer_fill(const InferContext& ctx) {
  const DType dtype = ctx.attrs().get_dtype("dtype");
  const std::string why = number_mismatch(ctx.attrs().get_float("value"), dtype);
  if (!why.empty())
    ctx.fail(fmt::format("cannot fill a tensor of {}: {}. Fill an f32 tensor and cast() it, or use a number {} holds",
                         dtype_name(dtype), why, dtype_name(dtype)));
  return {TensorType{dtype, declared_shape(ctx)}};
}

// iota() {shape, axis, dtype}
std::vector<TensorType> infer_iota(const InferContext& ctx) {
  const DType dtype = ctx.attrs().get_dtype("dtype");
  const Shape shape = declared_shape(ctx);
  if (dtype == DType::boolean) ctx.fail("iota needs a numeric dtype (f32, f64, i32, i64), got bool");
  const int axis = ctx.axis(ctx.attrs().get_int("axis"), shape.rank());
  if (dtype == DType::i32 && shape[axis] - 1 > std::numeric_limits<std::int32_t>::max())
    ctx.fail(fmt::format("axis {} of shape {} counts past the largest i32; use i64", axis, shape.to_string()));
  return {TensorType{dtype, shape}};
}

// random_uniform([step]) {shape, dtype, seed, stream, low, high}, and random_normal alike.
std::vector<TensorType> infer_random(const InferContext& ctx) {
  const DType dtype = ctx.attrs().get_dtype("dtype");
  if (!is_floating(dtype)) ctx.fail(fmt::format("random numbers need f32 or f64, got {}", dtype_name(dtype)));
  if (!ctx.inputs().empty()) {
    const TensorType& step = ctx.input(0);
    if (step.dtype != DType::i64 || step.shape.rank() != 0)
      ctx.fail(fmt::format("step must be an i64 scalar (i64[]), got {}", step.to_string()));
  }
  return {TensorType{dtype, declared_shape(ctx)}};
}

// The name Graph::apply gives a node built now: the scope prefixed to `base`, or to the first
// free "base_1", "base_2", ... Returned unscoped, so that passing it to apply keeps it as is.
std::string free_name(const Graph& g, const std::string& base) {
  const std::string prefix = g.current_scope().empty() ? "" : g.current_scope() + "/";
  if (!g.find(prefix + base)) return base;
  for (int i = 1;; ++i) {
    std::string candidate = fmt::format("{}_{}", base, i);
    if (!g.find(prefix + candidate)) return candidate;
  }
}

// A node's random stream: FNV-1a of its scoped name, mixed so that similar names give
// unrelated streams.
std::uint64_t stream_of(const std::string& scoped_name) {
  std::uint64_t h = 1469598103934665603ull;
  for (char c : scoped_name) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
  return philox::mix(h);
}

Value build_random(const OpDef& op, Graph& g, Shape shape, DType dtype, const char* a_name, double a,
                   const char* b_name, double b, Value step, SourceLoc where) {
  if (step.defined() && &step.graph() != &g)
    throw Error(fmt::format("step ('{}') belongs to graph '{}', not '{}'", step.name(), step.graph().name(), g.name()),
                std::string(op.name), "", where);
  const std::string name = free_name(g, std::string(op.name));
  const std::string scoped = g.current_scope().empty() ? name : g.current_scope() + "/" + name;
  Attributes attrs{{"shape", shape.dims()},
                   {"dtype", dtype},
                   {"seed", static_cast<std::int64_t>(g.seed())},
                   {"stream", static_cast<std::int64_t>(stream_of(scoped))},
                   {a_name, a},
                   {b_name, b}};
  std::vector<Value> inputs;
  if (step.defined()) inputs.push_back(step);
  return g.apply1(op, inputs, std::move(attrs), where, name);
}

// ∂x = cast(ḡ, x's dtype): between f32 and f64 the derivative is 1. Autodiff only asks when x
// is floating; no gradient flows out of a cast to an integer or bool.
std::vector<Value> vjp_cast(const VjpContext& c) { return {cast(c.g(), c.x(0).dtype())}; }

}  // namespace

// fill, iota and the random ops have no differentiable input: no gradient flows through them.
namespace ops {
const OpDef cast{.name = "cast",
                 .min_inputs = 1,
                 .max_inputs = 1,
                 .infer = infer_cast,
                 .elementwise = true,
                 .half_types = true,
                 .vjp = vjp_cast};
const OpDef fill{.name = "fill", .infer = infer_fill, .differentiable = false, .decode = decode_as<FillParams>};
const OpDef iota{.name = "iota", .infer = infer_iota, .differentiable = false, .decode = decode_as<AxisParams>};
const OpDef random_uniform{.name = "random_uniform",
                           .min_inputs = 0,
                           .max_inputs = 1,
                           .infer = infer_random,
                           .impure = true,
                           .key_on_output = true,
                           .differentiable = false,
                           .decode = decode_as<UniformParams>};
const OpDef random_normal{.name = "random_normal",
                          .min_inputs = 0,
                          .max_inputs = 1,
                          .infer = infer_random,
                          .impure = true,
                          .key_on_output = true,
                          .differentiable = false,
                          .decode = decode_as<NormalParams>};
}  // namespace ops

FillParams FillParams::decode(const DecodeContext& context) { return {context.attrs.get_float("value")}; }

UniformParams UniformParams::decode(const DecodeContext& context) {
  const Attributes& a = context.attrs;
  return {static_cast<std::uint64_t>(a.get_int("seed")), static_cast<std::uint64_t>(a.get_int("stream")),
          a.get_float("low"), a.get_float("high")};
}

NormalParams NormalParams::decode(const DecodeContext& context) {
  const Attributes& a = context.attrs;
  return {static_cast<std::uint64_t>(a.get_int("seed")), static_cast<std::uint64_t>(a.get_int("stream")),
          a.get_float("mean"), a.get_float("stddev")};
}

Value cast(Value x, DType to, Loc where) {
  if (!x.defined()) throw Error("input 0 is an undefined Value", "cast", "", where);
  if (x.dtype() == to) return x;
  const std::array<Value, 1> in{x};
  return x.graph().apply1(ops::cast, in, {{"dtype", to}}, where);
}

Value fill(Graph& g, Shape shape, double value, DType dtype, Loc where) {
  return g.apply1(ops::fill, {}, {{"shape", shape.dims()}, {"dtype", dtype}, {"value", value}}, where);
}
Value zeros(Graph& g, Shape shape, DType dtype, Loc where) { return fill(g, std::move(shape), 0.0, dtype, where); }
Value ones(Graph& g, Shape shape, DType dtype, Loc where) { return fill(g, std::move(shape), 1.0, dtype, where); }

Value full_like(Value like, double value, Loc where) {
  if (!like.defined()) throw Error("the Value to copy the type of is undefined", "fill", "", where);
  return fill(like.graph(), like.shape(), value, like.dtype(), where);
}
Value zeros_like(Value like, Loc where) { return full_like(like, 0.0, where); }
Value ones_like(Value like, Loc where) { return full_like(like, 1.0, where); }

Value iota(Graph& g, Shape shape, std::int64_t axis, DType dtype, Loc where) {
  if (axis >= -shape.rank() && axis < shape.rank()) axis = normalize_axis(static_cast<int>(axis), shape.rank());
  return g.apply1(ops::iota, {}, {{"shape", shape.dims()}, {"axis", axis}, {"dtype", dtype}}, where);
}

Value random_uniform(Graph& g, Shape shape, DType dtype, double low, double high, Value step, Loc where) {
  return build_random(ops::random_uniform, g, std::move(shape), dtype, "low", low, "high", high, step, where);
}

Value random_normal(Graph& g, Shape shape, DType dtype, double mean, double stddev, Value step, Loc where) {
  return build_random(ops::random_normal, g, std::move(shape), dtype, "mean", mean, "stddev", stddev, step, where);
}

}  // namespace fovea

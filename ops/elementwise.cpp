#include "fovea/ops/elementwise.h"

#include <array>

#include <fmt/format.h>

namespace fovea {

namespace {

// Unary ops keep their input's type; `floating` ops reject integers, `logical` ones want bool.
std::vector<TensorType> infer_numeric_unary(const InferContext& ctx) {
  if (ctx.input(0).dtype == DType::boolean) ctx.fail(fmt::format("expects a numeric input, got {}", ctx.input(0).to_string()));
  return {ctx.input(0)};
}
std::vector<TensorType> infer_floating_unary(const InferContext& ctx) {
  ctx.require_floating(0);
  return {ctx.input(0)};
}
std::vector<TensorType> infer_logical_unary(const InferContext& ctx) {
  if (ctx.input(0).dtype != DType::boolean) ctx.fail(fmt::format("expects a bool input, got {}", ctx.input(0).to_string()));
  return {ctx.input(0)};
}

Shape broadcast_or_fail(const InferContext& ctx) {
  const Shape& a = ctx.input(0).shape;
  const Shape& b = ctx.input(1).shape;
  Shape out;
  if (!broadcast_shapes(a, b, out)) {
    // Name the first pair of dims (from the right) that disagree.
    for (int i = 1; i <= std::min(a.rank(), b.rank()); ++i) {
      const auto da = a[a.rank() - i], db = b[b.rank() - i];
      if (da != db && da != 1 && db != 1)
        ctx.fail(fmt::format("shapes {} and {} do not broadcast (dim -{}: {} vs {})", ctx.input(0).to_string(),
                             ctx.input(1).to_string(), i, da, db));
    }
  }
  return out;
}

std::vector<TensorType> infer_arithmetic(const InferContext& ctx) {
  ctx.require_same_dtype();
  if (ctx.input(0).dtype == DType::boolean) ctx.fail(fmt::format("expects numeric inputs, got {}", format_types(ctx.inputs())));
  return {TensorType{ctx.input(0).dtype, broadcast_or_fail(ctx)}};
}
std::vector<TensorType> infer_floating_binary(const InferContext& ctx) {
  ctx.require_same_dtype();
  ctx.require_floating(0);
  return {TensorType{ctx.input(0).dtype, broadcast_or_fail(ctx)}};
}
std::vector<TensorType> infer_comparison(const InferContext& ctx) {
  ctx.require_same_dtype();
  return {TensorType{DType::boolean, broadcast_or_fail(ctx)}};
}
std::vector<TensorType> infer_logical_binary(const InferContext& ctx) {
  ctx.require_same_dtype();
  if (ctx.input(0).dtype != DType::boolean) ctx.fail(fmt::format("expects bool inputs, got {}", format_types(ctx.inputs())));
  return {TensorType{DType::boolean, broadcast_or_fail(ctx)}};
}

constexpr OpDef unary(std::string_view name, InferFn infer) {
  return OpDef{.name = name, .min_inputs = 1, .max_inputs = 1, .infer = infer, .elementwise = true};
}
constexpr OpDef binary(std::string_view name, InferFn infer) {
  return OpDef{.name = name, .min_inputs = 2, .max_inputs = 2, .infer = infer, .elementwise = true};
}

Value apply_unary(const OpDef& op, Value x, SourceLoc where) {
  const std::array<Value, 1> in{x};
  return x.graph().apply1(op, in, {}, where);
}

Value apply_binary(const OpDef& op, Value a, Value b, SourceLoc where) {
  if (!a.defined() || !b.defined())
    throw Error(fmt::format("input {} is an undefined Value", a.defined() ? 1 : 0), std::string(op.name), "", where);
  const std::array<Value, 2> in{a, b};
  return a.graph().apply1(op, in, {}, where);
}

}  // namespace

namespace ops {
const OpDef neg = unary("neg", infer_numeric_unary);
const OpDef abs = unary("abs", infer_numeric_unary);
const OpDef exp = unary("exp", infer_floating_unary);
const OpDef log = unary("log", infer_floating_unary);
const OpDef sqrt = unary("sqrt", infer_floating_unary);
const OpDef rsqrt = unary("rsqrt", infer_floating_unary);
const OpDef tanh = unary("tanh", infer_floating_unary);
const OpDef sigmoid = unary("sigmoid", infer_floating_unary);
const OpDef relu = unary("relu", infer_numeric_unary);
const OpDef sin = unary("sin", infer_floating_unary);
const OpDef cos = unary("cos", infer_floating_unary);
const OpDef logical_not = unary("logical_not", infer_logical_unary);

const OpDef add = binary("add", infer_arithmetic);
const OpDef sub = binary("sub", infer_arithmetic);
const OpDef mul = binary("mul", infer_arithmetic);
const OpDef div = binary("div", infer_arithmetic);
const OpDef pow = binary("pow", infer_floating_binary);
const OpDef maximum = binary("maximum", infer_arithmetic);
const OpDef minimum = binary("minimum", infer_arithmetic);
const OpDef equal = binary("equal", infer_comparison);
const OpDef not_equal = binary("not_equal", infer_comparison);
const OpDef less = binary("less", infer_comparison);
const OpDef less_equal = binary("less_equal", infer_comparison);
const OpDef greater = binary("greater", infer_comparison);
const OpDef greater_equal = binary("greater_equal", infer_comparison);
const OpDef logical_and = binary("logical_and", infer_logical_binary);
const OpDef logical_or = binary("logical_or", infer_logical_binary);
}  // namespace ops

Value neg(Value x, Loc w) { return apply_unary(ops::neg, x, w); }
Value abs(Value x, Loc w) { return apply_unary(ops::abs, x, w); }
Value exp(Value x, Loc w) { return apply_unary(ops::exp, x, w); }
Value log(Value x, Loc w) { return apply_unary(ops::log, x, w); }
Value sqrt(Value x, Loc w) { return apply_unary(ops::sqrt, x, w); }
Value rsqrt(Value x, Loc w) { return apply_unary(ops::rsqrt, x, w); }
Value tanh(Value x, Loc w) { return apply_unary(ops::tanh, x, w); }
Value sigmoid(Value x, Loc w) { return apply_unary(ops::sigmoid, x, w); }
Value relu(Value x, Loc w) { return apply_unary(ops::relu, x, w); }
Value sin(Value x, Loc w) { return apply_unary(ops::sin, x, w); }
Value cos(Value x, Loc w) { return apply_unary(ops::cos, x, w); }
Value logical_not(Value x, Loc w) { return apply_unary(ops::logical_not, x, w); }

Value add(Value a, Value b, Loc w) { return apply_binary(ops::add, a, b, w); }
Value sub(Value a, Value b, Loc w) { return apply_binary(ops::sub, a, b, w); }
Value mul(Value a, Value b, Loc w) { return apply_binary(ops::mul, a, b, w); }
Value div(Value a, Value b, Loc w) { return apply_binary(ops::div, a, b, w); }
Value pow(Value a, Value b, Loc w) { return apply_binary(ops::pow, a, b, w); }
Value maximum(Value a, Value b, Loc w) { return apply_binary(ops::maximum, a, b, w); }
Value minimum(Value a, Value b, Loc w) { return apply_binary(ops::minimum, a, b, w); }
Value equal(Value a, Value b, Loc w) { return apply_binary(ops::equal, a, b, w); }
Value not_equal(Value a, Value b, Loc w) { return apply_binary(ops::not_equal, a, b, w); }
Value less(Value a, Value b, Loc w) { return apply_binary(ops::less, a, b, w); }
Value less_equal(Value a, Value b, Loc w) { return apply_binary(ops::less_equal, a, b, w); }
Value greater(Value a, Value b, Loc w) { return apply_binary(ops::greater, a, b, w); }
Value greater_equal(Value a, Value b, Loc w) { return apply_binary(ops::greater_equal, a, b, w); }
Value logical_and(Value a, Value b, Loc w) { return apply_binary(ops::logical_and, a, b, w); }
Value logical_or(Value a, Value b, Loc w) { return apply_binary(ops::logical_or, a, b, w); }

Value scalar_like(Value like, double value, Loc where) {
  if (!like.defined()) throw Error("scalar_like: the Value is undefined", "constant", "", where);
  return like.graph().scalar(value, like.dtype(), SourceLoc(where));
}

static Value with_scalar(const OpDef& op, Value v, double c, bool scalar_first, SourceLoc where) {
  if (!v.defined()) throw Error("an operand is an undefined Value", std::string(op.name), "", where);
  Value s = v.graph().scalar(c, v.dtype(), where);
  return scalar_first ? apply_binary(op, s, v, where) : apply_binary(op, v, s, where);
}

Value operator+(Operand a, Value b) { return apply_binary(ops::add, a.value, b, a.where); }
Value operator-(Operand a, Value b) { return apply_binary(ops::sub, a.value, b, a.where); }
Value operator*(Operand a, Value b) { return apply_binary(ops::mul, a.value, b, a.where); }
Value operator/(Operand a, Value b) { return apply_binary(ops::div, a.value, b, a.where); }
Value operator-(Operand x) { return apply_unary(ops::neg, x.value, x.where); }
Value operator+(Operand a, double b) { return with_scalar(ops::add, a.value, b, false, a.where); }
Value operator-(Operand a, double b) { return with_scalar(ops::sub, a.value, b, false, a.where); }
Value operator*(Operand a, double b) { return with_scalar(ops::mul, a.value, b, false, a.where); }
Value operator/(Operand a, double b) { return with_scalar(ops::div, a.value, b, false, a.where); }
Value operator+(double a, Operand b) { return with_scalar(ops::add, b.value, a, true, b.where); }
Value operator-(double a, Operand b) { return with_scalar(ops::sub, b.value, a, true, b.where); }
Value operator*(double a, Operand b) { return with_scalar(ops::mul, b.value, a, true, b.where); }
Value operator/(double a, Operand b) { return with_scalar(ops::div, b.value, a, true, b.where); }

}  // namespace fovea

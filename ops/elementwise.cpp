#include "fovea/ops/elementwise.h"

#include <array>

#include <fmt/format.h>

#include "fovea/core/exact_number.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/vjp.h"

namespace fovea {

namespace {

// Unary ops keep their input's type; `floating` ops reject integers, `logical` ones want bool.
std::vector<TensorType> infer_numeric_unary(const InferContext& ctx) {
  if (ctx.input(0).dtype == DType::boolean)
    ctx.fail(fmt::format("expects a numeric input, got {}", ctx.input(0).to_string()));
  return {ctx.input(0)};
}
std::vector<TensorType> infer_floating_unary(const InferContext& ctx) {
  ctx.require_floating(0);
  return {ctx.input(0)};
}
std::vector<TensorType> infer_logical_unary(const InferContext& ctx) {
  if (ctx.input(0).dtype != DType::boolean)
    ctx.fail(fmt::format("expects a bool input, got {}", ctx.input(0).to_string()));
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
  if (ctx.input(0).dtype == DType::boolean)
    ctx.fail(fmt::format("expects numeric inputs, got {}", format_types(ctx.inputs())));
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
  if (ctx.input(0).dtype != DType::boolean)
    ctx.fail(fmt::format("expects bool inputs, got {}", format_types(ctx.inputs())));
  return {TensorType{DType::boolean, broadcast_or_fail(ctx)}};
}

constexpr OpDef unary(std::string_view name, InferFn infer, VjpFn vjp) {
  return OpDef{.name = name,
               .min_inputs = 1,
               .max_inputs = 1,
               .infer = infer,
               .elementwise = true,
               .vjp = vjp,
               .differentiable = vjp != nullptr};
}
constexpr OpDef binary(std::string_view name, InferFn infer, VjpFn vjp) {
  return OpDef{.name = name,
               .min_inputs = 2,
               .max_inputs = 2,
               .infer = infer,
               .elementwise = true,
               .vjp = vjp,
               .differentiable = vjp != nullptr};
}

// --- Gradient rules ----------------------------------------------------------------------
// Notation: y = f(x) or y = f(a, b), ḡ = ∂L/∂y. Binary rules sum their results back to each
// operand's shape (unbroadcast), since a broadcast operand was used at many output positions.

using Grads = std::vector<Value>;

Value zero_like_scalar(Value like) { return scalar_like(like, 0.0); }

// ∂(-x) = -ḡ
Grads vjp_neg(const VjpContext& c) { return {neg(c.g())}; }
// ∂|x| = ḡ·sign(x), with sign(0) = 0
Grads vjp_abs(const VjpContext& c) {
  const Value zero = zero_like_scalar(c.x(0));
  return {where(greater(c.x(0), zero), c.g(), where(less(c.x(0), zero), neg(c.g()), zeros_like(c.g())))};
}
// ∂ relu(x) = ḡ·[x > 0]
Grads vjp_relu(const VjpContext& c) {
  return {where(greater(c.x(0), zero_like_scalar(c.x(0))), c.g(), zeros_like(c.g()))};
}
// ∂ eˣ = ḡ·y
Grads vjp_exp(const VjpContext& c) { return {c.g() * c.y()}; }
// ∂ ln x = ḡ/x
Grads vjp_log(const VjpContext& c) { return {c.g() / c.x(0)}; }
// ∂ √x = ḡ/(2y)
Grads vjp_sqrt(const VjpContext& c) { return {c.g() * 0.5 / c.y()}; }
// ∂ x^(-1/2) = -ḡ·y³/2
Grads vjp_rsqrt(const VjpContext& c) { return {c.g() * -0.5 * (c.y() * c.y() * c.y())}; }
// ∂ tanh x = ḡ·(1 - y²)
Grads vjp_tanh(const VjpContext& c) { return {c.g() * (1.0 - c.y() * c.y())}; }
// ∂ σ(x) = ḡ·y·(1 - y)
Grads vjp_sigmoid(const VjpContext& c) { return {c.g() * (c.y() * (1.0 - c.y()))}; }
// ∂ sin x = ḡ·cos x;  ∂ cos x = -ḡ·sin x
Grads vjp_sin(const VjpContext& c) { return {c.g() * cos(c.x(0))}; }
Grads vjp_cos(const VjpContext& c) { return {neg(c.g() * sin(c.x(0)))}; }

// ∂(a ± b) = (ḡ, ±ḡ)
Grads vjp_add(const VjpContext& c) { return {unbroadcast(c.g(), c.x(0).shape()), unbroadcast(c.g(), c.x(1).shape())}; }
Grads vjp_sub(const VjpContext& c) {
  return {unbroadcast(c.g(), c.x(0).shape()), unbroadcast(neg(c.g()), c.x(1).shape())};
}
// ∂(a·b) = (ḡ·b, ḡ·a)
Grads vjp_mul(const VjpContext& c) {
  return {unbroadcast(c.g() * c.x(1), c.x(0).shape()), unbroadcast(c.g() * c.x(0), c.x(1).shape())};
}
// ∂(a/b) = (ḡ/b, -ḡ·a/b²) = (ḡ/b, -ḡ·y/b)
Grads vjp_div(const VjpContext& c) {
  const Value ga = c.g() / c.x(1);
  return {unbroadcast(ga, c.x(0).shape()), unbroadcast(neg(ga * c.y()), c.x(1).shape())};
}
// ∂ aᵇ = (ḡ·b·a^(b-1), ḡ·y·ln a); the second is taken as 0 where a <= 0 (ln undefined).
Grads vjp_pow(const VjpContext& c) {
  const Value a = c.x(0), b = c.x(1);
  const Value ga = c.g() * b * pow(a, b - 1.0);
  const Value positive = greater(a, zero_like_scalar(a));
  const Value safe_a = where(positive, a, ones_like(a));
  const Value gb = where(positive, c.g() * c.y() * log(safe_a), zeros_like(c.g()));
  return {unbroadcast(ga, a.shape()), unbroadcast(gb, b.shape())};
}
// ∂ max(a, b): ḡ goes to the larger operand (to a on ties); min likewise.
Grads vjp_maximum(const VjpContext& c) {
  const Value take_a = greater_equal(c.x(0), c.x(1));
  const Value zero = zeros_like(c.g());
  return {unbroadcast(where(take_a, c.g(), zero), c.x(0).shape()),
          unbroadcast(where(take_a, zero, c.g()), c.x(1).shape())};
}
Grads vjp_minimum(const VjpContext& c) {
  const Value take_a = less_equal(c.x(0), c.x(1));
  const Value zero = zeros_like(c.g());
  return {unbroadcast(where(take_a, c.g(), zero), c.x(0).shape()),
          unbroadcast(where(take_a, zero, c.g()), c.x(1).shape())};
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
const OpDef neg = unary("neg", infer_numeric_unary, vjp_neg);
const OpDef abs = unary("abs", infer_numeric_unary, vjp_abs);
const OpDef exp = unary("exp", infer_floating_unary, vjp_exp);
const OpDef log = unary("log", infer_floating_unary, vjp_log);
const OpDef sqrt = unary("sqrt", infer_floating_unary, vjp_sqrt);
const OpDef rsqrt = unary("rsqrt", infer_floating_unary, vjp_rsqrt);
const OpDef tanh = unary("tanh", infer_floating_unary, vjp_tanh);
const OpDef sigmoid = unary("sigmoid", infer_floating_unary, vjp_sigmoid);
const OpDef relu = unary("relu", infer_numeric_unary, vjp_relu);
const OpDef sin = unary("sin", infer_floating_unary, vjp_sin);
const OpDef cos = unary("cos", infer_floating_unary, vjp_cos);
const OpDef logical_not = unary("logical_not", infer_logical_unary, nullptr);

const OpDef add = binary("add", infer_arithmetic, vjp_add);
const OpDef sub = binary("sub", infer_arithmetic, vjp_sub);
const OpDef mul = binary("mul", infer_arithmetic, vjp_mul);
const OpDef div = binary("div", infer_arithmetic, vjp_div);
const OpDef pow = binary("pow", infer_floating_binary, vjp_pow);
const OpDef maximum = binary("maximum", infer_arithmetic, vjp_maximum);
const OpDef minimum = binary("minimum", infer_arithmetic, vjp_minimum);
const OpDef equal = binary("equal", infer_comparison, nullptr);
const OpDef not_equal = binary("not_equal", infer_comparison, nullptr);
const OpDef less = binary("less", infer_comparison, nullptr);
const OpDef less_equal = binary("less_equal", infer_comparison, nullptr);
const OpDef greater = binary("greater", infer_comparison, nullptr);
const OpDef greater_equal = binary("greater_equal", infer_comparison, nullptr);
const OpDef logical_and = binary("logical_and", infer_logical_binary, nullptr);
const OpDef logical_or = binary("logical_or", infer_logical_binary, nullptr);
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

// A C++ number becomes a scalar of `like`'s dtype, so it must be exact in that dtype: an i32
// x * 0.5 would silently be x * 0 (core/exact_number.h). `op` is the op being built with it.
static void check_number_fits(std::string_view op, Value like, double number, SourceLoc where) {
  const std::string why = number_mismatch(number, like.dtype());
  if (why.empty()) return;
  throw Error(fmt::format("the number {} meets '{}' ({}), and takes its dtype, but {}. Cast the tensor "
                          "first (e.g. cast({}, f32)) or use a number its dtype holds",
                          number, like.name(), like.type().to_string(), why, like.name()),
              std::string(op), "", where);
}

Value scalar_like(Value like, double value, Loc where) {
  if (!like.defined()) throw Error("scalar_like: the Value is undefined", "constant", "", where);
  check_number_fits("constant", like, value, where);
  return like.graph().scalar(value, like.dtype(), SourceLoc(where));
}

static Value with_scalar(const OpDef& op, Value v, double c, bool scalar_first, SourceLoc where) {
  if (!v.defined()) throw Error("an operand is an undefined Value", std::string(op.name), "", where);
  check_number_fits(op.name, v, c, where);
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

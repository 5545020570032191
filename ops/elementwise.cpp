#include "fovea/ops/elementwise.h"

#include <array>
#include <type_traits>

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
std::vector<TensorType> infer_classify_unary(const InferContext& ctx) {
  ctx.require_floating(0);
  return {TensorType{DType::boolean, ctx.input(0).shape}};
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

// The type rule of each kind of op (ops/elementwise_table.h).
constexpr InferFn unary_infer(ElementwiseKind kind) {
  switch (kind) {
    case ElementwiseKind::numeric:
      return infer_numeric_unary;
    case ElementwiseKind::floating:
      return infer_floating_unary;
    case ElementwiseKind::classify:
      return infer_classify_unary;
    default:
      return infer_logical_unary;
  }
}
constexpr InferFn binary_infer(ElementwiseKind kind) {
  switch (kind) {
    case ElementwiseKind::numeric:
      return infer_arithmetic;
    case ElementwiseKind::floating:
      return infer_floating_binary;
    case ElementwiseKind::comparison:
      return infer_comparison;
    default:
      return infer_logical_binary;
  }
}

constexpr OpDef unary(std::string_view name, ElementwiseKind kind, VjpFn vjp) {
  return OpDef{.name = name,
               .min_inputs = 1,
               .max_inputs = 1,
               .infer = unary_infer(kind),
               .elementwise = true,
               .vjp = vjp,
               .differentiable = vjp != nullptr};
}
constexpr OpDef binary(std::string_view name, ElementwiseKind kind, VjpFn vjp) {
  return OpDef{.name = name,
               .min_inputs = 2,
               .max_inputs = 2,
               .infer = binary_infer(kind),
               .elementwise = true,
               .vjp = vjp,
               .differentiable = vjp != nullptr};
}

// --- Gradient rules ----------------------------------------------------------------------
// Each row of the table gives ∂L/∂x as an expression of x (or a and b), the output y and its
// gradient g = ∂L/∂y. Below, each expression becomes a lambda (a "rule"), and the rule a VjpFn;
// binary results are summed back to each operand's shape (unbroadcast), since a broadcast
// operand was used at many output positions.

using Grads = std::vector<Value>;

// The gradient column of an op that has none: its OpDef then gets no VjpFn.
struct NoGradient {};
constexpr NoGradient no_gradient;

// Helpers the rows use.
// g·sign(x), with sign(0) = 0: the gradient of |x|.
Value sign_times(Value x, Value g) {
  const Value zero = scalar_like(x, 0.0);
  return where(greater(x, zero), g, where(less(x, zero), neg(g), zeros_like(g)));
}
// 2/√π, the factor of erf′(x) = 2/√π · e^(-x²).
constexpr double kTwoOverSqrtPi = 1.1283791670955126;
// q rounded toward zero: fmod(a, b) = a - b·truncate(a/b), so fmod's gradient in b is
// -g·truncate(a/b). Built from ops that have opcodes, so that fusion keeps it in one loop.
Value truncate(Value q) { return where(less(q, scalar_like(q, 0.0)), ceil(q), floor(q)); }
// g·[x > 0]: the gradient of relu.
Value where_positive(Value x, Value g) { return where(greater(x, scalar_like(x, 0.0)), g, zeros_like(g)); }
// ∂ aᵇ/∂b = ḡ·y·ln a, taken as 0 where a <= 0 (ln undefined there).
Value pow_exponent_grad(Value a, Value y, Value g) {
  const Value positive = greater(a, scalar_like(a, 0.0));
  const Value safe_a = where(positive, a, ones_like(a));
  return where(positive, g * y * log(safe_a), zeros_like(g));
}

template <typename Rule>
Grads unary_vjp(const VjpContext& c) {
  return {Rule{}(c.x(0), c.y(), c.g())};
}
template <typename RuleA, typename RuleB>
Grads binary_vjp(const VjpContext& c) {
  const Value a = c.x(0), b = c.x(1), y = c.y(), g = c.g();
  return {unbroadcast(RuleA{}(a, b, y, g), a.shape()), unbroadcast(RuleB{}(a, b, y, g), b.shape())};
}
template <typename Rule>
constexpr VjpFn unary_vjp_of() {
  if constexpr (std::is_same_v<std::invoke_result_t<Rule, Value, Value, Value>, NoGradient>)
    return nullptr;
  else
    return &unary_vjp<Rule>;
}
template <typename RuleA, typename RuleB>
constexpr VjpFn binary_vjp_of() {
  if constexpr (std::is_same_v<std::invoke_result_t<RuleA, Value, Value, Value, Value>, NoGradient>)
    return nullptr;
  else
    return &binary_vjp<RuleA, RuleB>;
}

// One rule type per row: unary_rule_neg, binary_rule_a_add, binary_rule_b_add, ...
#define FOVEA_UNARY_RULE(name, functor, kind, gradient) \
  using unary_rule_##name =                             \
      decltype([]([[maybe_unused]] Value x, [[maybe_unused]] Value y, [[maybe_unused]] Value g) { return gradient; });
#define FOVEA_BINARY_RULE(name, functor, kind, gradient_a, gradient_b)                          \
  using binary_rule_a_##name =                                                                  \
      decltype([]([[maybe_unused]] Value a, [[maybe_unused]] Value b, [[maybe_unused]] Value y, \
                  [[maybe_unused]] Value g) { return gradient_a; });                            \
  using binary_rule_b_##name =                                                                  \
      decltype([]([[maybe_unused]] Value a, [[maybe_unused]] Value b, [[maybe_unused]] Value y, \
                  [[maybe_unused]] Value g) { return gradient_b; });
FOVEA_UNARY_OPS(FOVEA_UNARY_RULE)
FOVEA_BINARY_OPS(FOVEA_BINARY_RULE)
#undef FOVEA_UNARY_RULE
#undef FOVEA_BINARY_RULE

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

// The OpDefs and the functions that build their nodes, one of each per row of the table.
namespace ops {
#define FOVEA_UNARY_OPDEF(name, functor, kind, ...) \
  const OpDef name = unary(#name, ElementwiseKind::kind, unary_vjp_of<unary_rule_##name>());
#define FOVEA_BINARY_OPDEF(name, functor, kind, ...) \
  const OpDef name = binary(#name, ElementwiseKind::kind, binary_vjp_of<binary_rule_a_##name, binary_rule_b_##name>());
FOVEA_UNARY_OPS(FOVEA_UNARY_OPDEF)
FOVEA_BINARY_OPS(FOVEA_BINARY_OPDEF)
#undef FOVEA_UNARY_OPDEF
#undef FOVEA_BINARY_OPDEF
}  // namespace ops

#define FOVEA_UNARY_FUNCTION(name, ...) \
  Value name(Value x, Loc w) { return apply_unary(ops::name, x, w); }
#define FOVEA_BINARY_FUNCTION(name, ...) \
  Value name(Value a, Value b, Loc w) { return apply_binary(ops::name, a, b, w); }
FOVEA_UNARY_OPS(FOVEA_UNARY_FUNCTION)
FOVEA_BINARY_OPS(FOVEA_BINARY_FUNCTION)
#undef FOVEA_UNARY_FUNCTION
#undef FOVEA_BINARY_FUNCTION

// A C++ number becomes a scalar of `like`'s dtype, so it must be exact in that dtype: an i32
// x * 0.5 would silently be x * 0 (core/exact_number.h). `op` is the op being built with it.
static void check_number_fits(std::string_view op, Value like, double number, SourceLoc where) {
  const std::string why = number_mismatch(number, like.dtype());
  if (why.empty()) return;
  throw Error(fmt::format("the number {} meets '{}' ({}), and takes its dtype, but {}. Cast the tensor "
                          "first (e.g. cast({}, f32)) or use a number its dtype holds",
                          number, like.name(), like.type().to_string(), why, like.name()),
              std::string(op), "", like.graph().located(where));
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

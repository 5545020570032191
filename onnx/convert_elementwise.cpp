// ONNX's elementwise ops: math, comparisons, logic, activations, Cast, Clip, Where.
#include <cmath>
#include <limits>

#include <fmt/format.h>

#include "fovea/nn/layers.h"
#include "fovea/onnx/converter.h"
#include "fovea/onnx/tensor_proto.h"
#include "fovea/ops/creation.h"
#include "fovea/ops/elementwise.h"
#include "fovea/ops/indexing.h"
#include "fovea/ops/shape_ops.h"

namespace fovea::onnx {

namespace {

using Unary = Value (*)(Value, Loc);
using Binary = Value (*)(Value, Value, Loc);

// A converter for every unary and binary op that maps to one Fovea op: the op is a template
// argument, so each row of the table below is one instantiation.
template <Unary op>
std::vector<Value> unary(NodeContext& ctx) {
  return {op(ctx.input(0), Loc::current())};
}

// Before version 7 a binary op broadcast only when its `broadcast` attribute said so, and then
// B's dims lined up with A's from `axis` on (at the end when no axis is given); B is reshaped
// to that alignment so that NumPy broadcasting computes the same.
Value legacy_operand(NodeContext& ctx, const Value& a, Value b) {
  const bool broadcast = ctx.attribute_int("broadcast", 0) != 0;
  const std::optional<std::int64_t> axis =
      ctx.has_attribute("axis") ? std::optional(ctx.attribute_int("axis")) : std::nullopt;
  if (!broadcast) {
    if (a.shape() != b.shape()) ctx.invalid("its operands differ in shape and broadcast is 0");
    return b;
  }
  if (!axis || b.rank() == 0) return b;
  const std::int64_t first = normalize_axis(ctx, *axis, a.rank());
  if (first + b.rank() > a.rank()) ctx.invalid("B does not fit in A from axis on");
  std::vector<std::int64_t> dims(static_cast<std::size_t>(a.rank()), 1);
  for (int i = 0; i < b.rank(); ++i) dims[static_cast<std::size_t>(first + i)] = b.shape()[i];
  return reshape(b, Shape(std::move(dims)));
}

template <Binary op>
std::vector<Value> binary(NodeContext& ctx) {
  const Value a = ctx.input(0);
  Value b = ctx.input(1);
  if (ctx.version() < 7) b = legacy_operand(ctx, a, b);
  return {op(a, b, Loc::current())};
}

Value xor_(Value a, Value b, Loc where) { return not_equal(a, b, where); }

// Sum, Mean, Max, Min: any number of operands, broadcast together.
template <Binary op>
Value fold_inputs(NodeContext& ctx) {
  Value out = ctx.input(0);
  for (int i = 1; i < ctx.input_count(); ++i) out = op(out, ctx.input(i), Loc::current());
  return out;
}

template <Binary op>
std::vector<Value> variadic(NodeContext& ctx) {
  return {fold_inputs<op>(ctx)};
}

std::vector<Value> mean(NodeContext& ctx) {
  const Value sum = fold_inputs<add>(ctx);
  return {sum / static_cast<double>(ctx.input_count())};
}

// Pow: the exponent may have another type than the base; the result has the base's.
std::vector<Value> power(NodeContext& ctx) {
  const Value base = ctx.input(0);
  Value exponent = ctx.input(1);
  if (ctx.version() < 7) exponent = legacy_operand(ctx, base, exponent);
  // Integer bases are raised in f64, exact for every result an int64 of 2^53 or less holds,
  // and truncated back to the base's type, as ONNX's reference does.
  const bool integer = base.dtype() == DType::i32 || base.dtype() == DType::i64;
  const DType compute = integer ? DType::f64 : base.dtype();
  const Value result = pow(base.dtype() == compute ? base : cast(base, compute),
                           exponent.dtype() == compute ? exponent : cast(exponent, compute));
  return {integer ? cast(result, base.dtype()) : result};
}

// Mod: floor modulo (the divisor's sign) unless fmod = 1 (the dividend's sign, C's fmod);
// ONNX requires fmod = 1 for floats.
std::vector<Value> modulo(NodeContext& ctx) {
  const Value a = ctx.input(0), b = ctx.input(1);
  const bool c_style = ctx.attribute_int("fmod", 0) != 0;
  const bool floating = a.dtype() == DType::f32 || a.dtype() == DType::f64;
  if (floating && !c_style) ctx.invalid("fmod must be 1 for floating-point inputs");
  return {c_style ? fmod(a, b) : mod(a, b)};
}

// IsInf: which infinities count is the node's choice.
std::vector<Value> is_inf(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const bool negative = ctx.attribute_int("detect_negative", 1) != 0;
  const bool positive = ctx.attribute_int("detect_positive", 1) != 0;
  const Value inf = isinf(x);
  if (negative && positive) return {inf};
  const Value zero = scalar_like(x, 0.0);
  if (negative) return {logical_and(inf, less(x, zero))};
  if (positive) return {logical_and(inf, greater(x, zero))};
  return {fill(ctx.graph(), x.shape(), 0.0, DType::boolean)};
}

std::vector<Value> identity(NodeContext& ctx) { return {ctx.input(0)}; }

std::vector<Value> cast_to(NodeContext& ctx) {
  const Value x = ctx.input(0);
  if (ctx.has_attribute("saturate")) ctx.attribute_int("saturate");  // opset 19 (float8 only)
  const auto to = static_cast<std::int32_t>(ctx.attribute_int("to"));
  return {cast(x, dtype_from_element_type(to, "Cast's target type"))};
}

std::vector<Value> cast_like(NodeContext& ctx) {
  const Value x = ctx.input(0);
  return {cast(x, ctx.input(1).dtype())};
}

// Clip: bounds as inputs since version 11, as attributes before.
std::vector<Value> clip(NodeContext& ctx) {
  Value x = ctx.input(0);
  if (ctx.version() < 11) {
    const double low = ctx.attribute_float("min", -std::numeric_limits<float>::max());
    const double high = ctx.attribute_float("max", std::numeric_limits<float>::max());
    return {minimum(maximum(x, scalar_like(x, low)), scalar_like(x, high))};
  }
  if (auto low = ctx.optional_input(1)) x = maximum(x, *low);
  if (auto high = ctx.optional_input(2)) x = minimum(x, *high);
  return {x};
}

std::vector<Value> where_(NodeContext& ctx) { return {where(ctx.input(0), ctx.input(1), ctx.input(2))}; }

// --- Activations, as compositions --------------------------------------------------------------

std::vector<Value> leaky_relu(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const double alpha = ctx.attribute_float("alpha", 0.01);
  return {where(greater_equal(x, scalar_like(x, 0.0)), x, x * alpha)};
}

std::vector<Value> prelu(NodeContext& ctx) {
  const Value x = ctx.input(0);
  Value slope = ctx.input(1);
  // Before version 7 a slope of C values applied per channel (axis 1).
  if (ctx.version() < 7 && slope.rank() == 1 && x.rank() >= 2 && slope.shape()[0] == x.shape()[1] &&
      slope.shape()[0] != 1) {
    std::vector<std::int64_t> dims(static_cast<std::size_t>(x.rank() - 1), 1);
    dims[0] = slope.shape()[0];
    slope = reshape(slope, Shape(std::move(dims)));
  }
  return {where(greater_equal(x, scalar_like(x, 0.0)), x, x * slope)};
}

std::vector<Value> elu(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const double alpha = ctx.attribute_float("alpha", 1.0);
  return {where(greater_equal(x, scalar_like(x, 0.0)), x, (exp(x) - 1.0) * alpha)};
}

std::vector<Value> selu(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const double alpha = ctx.attribute_float("alpha", 1.67326319217681884765625);
  const double gamma = ctx.attribute_float("gamma", 1.05070102214813232421875);
  return {where(greater(x, scalar_like(x, 0.0)), x * gamma, (exp(x) - 1.0) * (alpha * gamma))};
}

std::vector<Value> celu(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const double alpha = ctx.attribute_float("alpha", 1.0);
  const Value zero = scalar_like(x, 0.0);
  return {maximum(x, zero) + minimum(zero, (exp(x / alpha) - 1.0) * alpha)};
}

std::vector<Value> hard_sigmoid(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const double alpha = ctx.attribute_float("alpha", 0.2);
  const double beta = ctx.attribute_float("beta", 0.5);
  return {minimum(maximum(x * alpha + beta, scalar_like(x, 0.0)), scalar_like(x, 1.0))};
}

std::vector<Value> hard_swish(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const Value gate = minimum(maximum(x / 6.0 + 0.5, scalar_like(x, 0.0)), scalar_like(x, 1.0));
  return {x * gate};
}

std::vector<Value> thresholded_relu(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const double alpha = ctx.attribute_float("alpha", 1.0);
  return {where(greater(x, scalar_like(x, alpha)), x, scalar_like(x, 0.0))};
}

std::vector<Value> softsign(NodeContext& ctx) {
  const Value x = ctx.input(0);
  return {x / (abs(x) + 1.0)};
}

std::vector<Value> shrink(NodeContext& ctx) {
  const Value x = ctx.input(0);
  const double bias = ctx.attribute_float("bias", 0.0);
  const double lambd = ctx.attribute_float("lambd", 0.5);
  const Value zero = scalar_like(x, 0.0);
  return {where(less(x, scalar_like(x, -lambd)), x + bias, where(greater(x, scalar_like(x, lambd)), x - bias, zero))};
}

// Dropout at inference (the only mode a static import knows): the identity, and a mask of
// trues when the node asks for it.
std::vector<Value> dropout(NodeContext& ctx) {
  const Value x = ctx.input(0);
  if (ctx.version() < 7 && ctx.attribute_int("is_test", 0) == 0)
    ctx.unsupported("is_test = 0: an imported graph runs dropout in inference mode only");
  if (ctx.version() < 12) {
    ctx.attribute_float("ratio", 0.5);
  } else {
    if (ctx.has_input(1)) ctx.constant(1);  // the ratio: any value is the identity at inference
    if (ctx.has_input(2) && ctx.constant_number(2) != 0.0)
      ctx.unsupported("training_mode is true: an imported graph runs dropout in inference mode only");
    if (ctx.has_attribute("seed")) ctx.attribute_int("seed");
  }
  if (!ctx.wants_output(1)) return {x};
  return {x, fill(ctx.graph(), x.shape(), 1.0, DType::boolean)};
}

}  // namespace

void add_elementwise_converters(ConverterTable& table) {
  const ConverterEntry rows[] = {
      {"Abs", 1, unary<abs>},
      {"Neg", 1, unary<neg>},
      {"Relu", 1, unary<relu>},
      {"Exp", 1, unary<exp>},
      {"Log", 1, unary<log>},
      {"Sqrt", 1, unary<sqrt>},
      {"Tanh", 1, unary<tanh>},
      {"Sigmoid", 1, unary<sigmoid>},
      {"Sin", 7, unary<sin>},
      {"Cos", 7, unary<cos>},
      {"Softplus", 1, unary<softplus>},
      {"Not", 1, unary<logical_not>},
      {"Reciprocal", 1, unary<reciprocal>},
      {"Floor", 1, unary<floor>},
      {"Ceil", 1, unary<ceil>},
      {"Round", 11, unary<round>},
      {"Sign", 9, unary<sign>},
      {"Erf", 9, unary<erf>},
      {"Tan", 7, unary<tan>},
      {"Asin", 7, unary<asin>},
      {"Acos", 7, unary<acos>},
      {"Atan", 7, unary<atan>},
      {"Sinh", 9, unary<sinh>},
      {"Cosh", 9, unary<cosh>},
      {"Asinh", 9, unary<asinh>},
      {"Acosh", 9, unary<acosh>},
      {"Atanh", 9, unary<atanh>},
      {"IsNaN", 9, unary<isnan>},
      {"IsInf", 10, is_inf},
      {"Mod", 10, modulo},
      {"Add", 1, binary<add>},
      {"Sub", 1, binary<sub>},
      {"Mul", 1, binary<mul>},
      {"Div", 1, binary<div>},
      {"Pow", 1, power},
      {"Equal", 1, binary<equal>},
      {"Greater", 1, binary<greater>},
      {"Less", 1, binary<less>},
      {"GreaterOrEqual", 12, binary<greater_equal>},
      {"LessOrEqual", 12, binary<less_equal>},
      {"And", 1, binary<logical_and>},
      {"Or", 1, binary<logical_or>},
      {"Xor", 1, binary<xor_>},
      {"Max", 6, variadic<maximum>},
      {"Min", 6, variadic<minimum>},
      {"Sum", 6, variadic<add>},
      {"Mean", 6, mean},
      {"Identity", 1, identity},
      {"Cast", 6, cast_to},
      {"CastLike", 15, cast_like},
      {"Clip", 6, clip},
      {"Where", 9, where_},
      {"LeakyRelu", 1, leaky_relu},
      {"PRelu", 6, prelu},
      {"Elu", 1, elu},
      {"Selu", 1, selu},
      {"Celu", 12, celu},
      {"HardSigmoid", 1, hard_sigmoid},
      {"HardSwish", 14, hard_swish},
      {"ThresholdedRelu", 10, thresholded_relu},
      {"Softsign", 1, softsign},
      {"Shrink", 9, shrink},
      {"Dropout", 6, dropout},
  };
  for (const ConverterEntry& row : rows) table.emplace(row.op_type, row);
}

}  // namespace fovea::onnx

// The elementwise primitives, each listed once. Everything else about them is derived from
// these rows: the OpDefs, the user functions' definitions and the gradient rules
// (ops/elementwise.cpp), the CPU kernels and their registration (backends/cpu), the opcodes of
// fused_elementwise programs and both interpreters of them (CPU and CUDA), and the CUDA
// kernels, their launchers' enums and their registration (backends/cuda). docs/adding_an_op.md
// walks through adding a row.
//
// A row of FOVEA_UNARY_OPS is   X(name, functor, kind, gradient)
// and one of FOVEA_BINARY_OPS   X(name, functor, kind, gradient of a, gradient of b)
//
//   name      the op's name, and that of its OpDef (ops::name) and its function (fovea::name,
//             declared in ops/elementwise.h)
//   functor   the math, a struct in ops/functors.h, usable on the host and the device
//   kind      which dtypes it takes and what it returns (ElementwiseKind below)
//   gradient  ∂L/∂x as an expression of Values: x (or a and b), the output y and its gradient g;
//             binary rules are summed back to each operand's shape (unbroadcast) for you.
//             `no_gradient` for an op that is not differentiable; a piecewise-constant op
//             (floor, sign) has `zeros_like(g)` instead, so that a graph holding one can still
//             be differentiated.
//
// This header is read by nvcc too: plain C++, no library headers beyond <cstdint>. The rows
// mention functors and gradient expressions as tokens only; each user of the table expands the
// columns it needs (nvcc never sees a gradient).
#pragma once

#include <cstdint>

namespace fovea {

// The dtypes an elementwise op is defined on, which also picks its type rule.
enum class ElementwiseKind : std::int32_t {
  numeric,     // f32, f64, i32, i64 in; the same type out
  floating,    // f32, f64 in; the same type out
  logical,     // bool in; bool out
  comparison,  // two operands of one type, any of f32, f64, i32, i64, bool; bool out
  classify,    // f32, f64 in; bool out (isnan, isinf)
};

}  // namespace fovea

// clang-format off
#define FOVEA_UNARY_OPS(X)                                                       \
  X(neg,         fn::Neg,        numeric,  neg(g))                                \
  X(abs,         fn::Abs,        numeric,  sign_times(x, g))                        \
  X(relu,        fn::Relu,       numeric,  where_positive(x, g))                  \
  X(exp,         fn::Exp,        floating, g * y)                                 \
  X(log,         fn::Log,        floating, g / x)                                 \
  X(sqrt,        fn::Sqrt,       floating, g * 0.5 / y)                           \
  X(rsqrt,       fn::Rsqrt,      floating, g * -0.5 * (y * y * y))                \
  X(tanh,        fn::Tanh,       floating, g * (1.0 - y * y))                     \
  X(sigmoid,     fn::Sigmoid,    floating, g * (y * (1.0 - y)))                   \
  X(sin,         fn::Sin,        floating, g * cos(x))                            \
  X(cos,         fn::Cos,        floating, neg(g * sin(x)))                       \
  X(softplus,    fn::Softplus,   floating, g * sigmoid(x))                        \
  X(tan,         fn::Tan,        floating, g * (1.0 + y * y))                     \
  X(asin,        fn::Asin,       floating, g * rsqrt(1.0 - x * x))                \
  X(acos,        fn::Acos,       floating, neg(g * rsqrt(1.0 - x * x)))           \
  X(atan,        fn::Atan,       floating, g / (1.0 + x * x))                     \
  X(sinh,        fn::Sinh,       floating, g * cosh(x))                           \
  X(cosh,        fn::Cosh,       floating, g * sinh(x))                           \
  X(asinh,       fn::Asinh,      floating, g * rsqrt(x * x + 1.0))                \
  X(acosh,       fn::Acosh,      floating, g * rsqrt(x * x - 1.0))                \
  X(atanh,       fn::Atanh,      floating, g / (1.0 - x * x))                     \
  X(erf,         fn::Erf,        floating, g * kTwoOverSqrtPi * exp(neg(x * x)))  \
  X(reciprocal,  fn::Reciprocal, floating, neg(g * y * y))                        \
  X(floor,       fn::Floor,      floating, zeros_like(g))                         \
  X(ceil,        fn::Ceil,       floating, zeros_like(g))                         \
  X(round,       fn::Round,      floating, zeros_like(g))                         \
  X(sign,        fn::Sign,       numeric,  zeros_like(g))                         \
  X(isnan,       fn::IsNan,      classify, no_gradient)                           \
  X(isinf,       fn::IsInf,      classify, no_gradient)                           \
  X(logical_not, fn::LogicalNot, logical,  no_gradient)

#define FOVEA_BINARY_OPS(X)                                                                           \
  X(add,           fn::Add,          numeric,    g,                          g)                        \
  X(sub,           fn::Sub,          numeric,    g,                          neg(g))                   \
  X(mul,           fn::Mul,          numeric,    g * b,                      g * a)                    \
  X(div,           fn::Div,          numeric,    g / b,                      neg(g / b * y))           \
  X(pow,           fn::Pow,          floating,   g * b * pow(a, b - 1.0),    pow_exponent_grad(a, y, g)) \
  X(mod,           fn::Mod,          numeric,    g,                          neg(g * floor(a / b)))    \
  X(fmod,          fn::Fmod,         numeric,    g,                          neg(g * truncate(a / b))) \
  X(maximum,       fn::Maximum,      numeric,    where(greater_equal(a, b), g, zeros_like(g)),          \
                                                 where(greater_equal(a, b), zeros_like(g), g))          \
  X(minimum,       fn::Minimum,      numeric,    where(less_equal(a, b), g, zeros_like(g)),             \
                                                 where(less_equal(a, b), zeros_like(g), g))             \
  X(equal,         fn::Equal,        comparison, no_gradient,                no_gradient)              \
  X(not_equal,     fn::NotEqual,     comparison, no_gradient,                no_gradient)              \
  X(less,          fn::Less,         comparison, no_gradient,                no_gradient)              \
  X(less_equal,    fn::LessEqual,    comparison, no_gradient,                no_gradient)              \
  X(greater,       fn::Greater,      comparison, no_gradient,                no_gradient)              \
  X(greater_equal, fn::GreaterEqual, comparison, no_gradient,                no_gradient)              \
  X(logical_and,   fn::LogicalAnd,   logical,    no_gradient,                no_gradient)              \
  X(logical_or,    fn::LogicalOr,    logical,    no_gradient,                no_gradient)
// clang-format on

// Helpers for the users of the table: a row's name alone, and counting rows.
#define FOVEA_ELEMENTWISE_NAME(name, ...) name,
#define FOVEA_ELEMENTWISE_COUNT(...) +1

namespace fovea {

inline constexpr int kUnaryOpCount = 0 FOVEA_UNARY_OPS(FOVEA_ELEMENTWISE_COUNT);
inline constexpr int kBinaryOpCount = 0 FOVEA_BINARY_OPS(FOVEA_ELEMENTWISE_COUNT);

}  // namespace fovea

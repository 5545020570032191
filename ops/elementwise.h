// Elementwise ops: unary math, binary arithmetic with NumPy broadcasting, comparisons.
//
// Integers: add, sub, mul and neg wrap around on overflow (two's complement, as NumPy and
// PyTorch do: i32 2147483647 + 1 is -2147483648; neg and abs of INT_MIN are INT_MIN). div
// truncates toward zero, INT_MIN / -1 wraps to INT_MIN, and a zero divisor (of div, mod or
// fmod) is a run-time error naming the node. NaN: every op propagates it (relu(NaN),
// maximum(NaN, x) and minimum(x, NaN) are NaN, as in PyTorch); comparisons with NaN are false,
// except not_equal.
//
// Every function takes the user's source location as a defaulted last argument, so that a
// shape error points at the user's line. Operators (x + y, x * 2.0f) capture it through the
// implicit conversion of their left operand to `Operand`.
#pragma once

#include <source_location>

#include "fovea/core/graph.h"
#include "fovea/ops/elementwise_table.h"

namespace fovea {

using Loc = std::source_location;

// --- Unary: y[i] = f(x[i]) ---------------------------------------------------------------
Value neg(Value x, Loc where = Loc::current());
Value abs(Value x, Loc where = Loc::current());
Value exp(Value x, Loc where = Loc::current());
Value log(Value x, Loc where = Loc::current());
Value sqrt(Value x, Loc where = Loc::current());
Value rsqrt(Value x, Loc where = Loc::current());
Value tanh(Value x, Loc where = Loc::current());
Value sigmoid(Value x, Loc where = Loc::current());
Value relu(Value x, Loc where = Loc::current());
Value sin(Value x, Loc where = Loc::current());
Value cos(Value x, Loc where = Loc::current());
Value softplus(Value x, Loc where = Loc::current());  // ln(1 + eˣ); its gradient is sigmoid(x)
Value tan(Value x, Loc where = Loc::current());
Value asin(Value x, Loc where = Loc::current());  // NaN outside [-1, 1], as are acos and atanh
Value acos(Value x, Loc where = Loc::current());
Value atan(Value x, Loc where = Loc::current());
Value sinh(Value x, Loc where = Loc::current());
Value cosh(Value x, Loc where = Loc::current());
Value asinh(Value x, Loc where = Loc::current());
Value acosh(Value x, Loc where = Loc::current());  // NaN below 1
Value atanh(Value x, Loc where = Loc::current());
Value erf(Value x, Loc where = Loc::current());
Value reciprocal(Value x, Loc where = Loc::current());  // 1/x
// Rounding: to -∞, to +∞, and to the nearest integer with halves to the even one (0.5 → 0,
// 1.5 → 2, -2.5 → -2, as ONNX's Round). Their gradient is zero (they are constant between
// integers), not missing: a graph that holds them can be differentiated.
Value floor(Value x, Loc where = Loc::current());
Value ceil(Value x, Loc where = Loc::current());
Value round(Value x, Loc where = Loc::current());
// -1, 0 or 1 (f32, f64, i32, i64); NaN stays NaN. Its gradient is zero, as for floor.
Value sign(Value x, Loc where = Loc::current());
// Bool tensors: where an f32 or f64 x is NaN, or ±∞.
Value isnan(Value x, Loc where = Loc::current());
Value isinf(Value x, Loc where = Loc::current());
Value logical_not(Value x, Loc where = Loc::current());

// --- Binary with broadcasting: y[i] = f(a[i], b[i]) ------------------------------------------
Value add(Value a, Value b, Loc where = Loc::current());
Value sub(Value a, Value b, Loc where = Loc::current());
Value mul(Value a, Value b, Loc where = Loc::current());
Value div(Value a, Value b, Loc where = Loc::current());
Value pow(Value a, Value b, Loc where = Loc::current());
// Remainders: mod's takes the divisor's sign (floor modulo, Python's %, ONNX's Mod with
// fmod = 0), fmod's the dividend's (C's fmod; on integers C++'s %). mod(-7, 3) = 2,
// mod(7, -3) = -2, fmod(-7, 3) = -1. An integer zero divisor is a run-time error, as for div.
Value mod(Value a, Value b, Loc where = Loc::current());
Value fmod(Value a, Value b, Loc where = Loc::current());
Value maximum(Value a, Value b, Loc where = Loc::current());
Value minimum(Value a, Value b, Loc where = Loc::current());
// Comparisons give bool tensors.
Value equal(Value a, Value b, Loc where = Loc::current());
Value not_equal(Value a, Value b, Loc where = Loc::current());
Value less(Value a, Value b, Loc where = Loc::current());
Value less_equal(Value a, Value b, Loc where = Loc::current());
Value greater(Value a, Value b, Loc where = Loc::current());
Value greater_equal(Value a, Value b, Loc where = Loc::current());
Value logical_and(Value a, Value b, Loc where = Loc::current());
Value logical_or(Value a, Value b, Loc where = Loc::current());

// A rank-0 constant with `like`'s dtype, in `like`'s graph: how C++ numbers enter a graph.
// The number must be exact in that dtype (core/exact_number.h): an integer tensor takes only
// integral numbers in its range (2.0 is fine; 0.5 and 1e20 with an i32 are errors), bool only
// 0 and 1. The operators below check the same, naming the op, the tensor and the user's line.
Value scalar_like(Value like, double value, Loc where = Loc::current());

// --- Operators ----------------------------------------------------------------------------
// The left (or only) Value operand converts to Operand, recording the user's line.
struct Operand {
  Value value;
  SourceLoc where;
  Operand(Value v, Loc loc = Loc::current()) : value(v), where(loc) {}  // NOLINT: implicit on purpose
};

Value operator+(Operand a, Value b);
Value operator-(Operand a, Value b);
Value operator*(Operand a, Value b);
Value operator/(Operand a, Value b);
Value operator-(Operand x);
// A C++ number on either side becomes a scalar of the Value's dtype: x * 0.5f, 1.0 - x. With an
// integer tensor the number must be integral and in range (x * 0.5 on an i32 x is an error, not
// x * 0: cast x to f32 first).
Value operator+(Operand a, double b);
Value operator-(Operand a, double b);
Value operator*(Operand a, double b);
Value operator/(Operand a, double b);
Value operator+(double a, Operand b);
Value operator-(double a, Operand b);
Value operator*(double a, Operand b);
Value operator/(double a, Operand b);

// The op definitions (ops::neg, ops::add, ...), one per row of ops/elementwise_table.h, for
// passes and tests that match on them and for the backends' kernel registries.
namespace ops {
#define FOVEA_DECLARE_OPDEF(name, ...) extern const OpDef name;
FOVEA_UNARY_OPS(FOVEA_DECLARE_OPDEF)
FOVEA_BINARY_OPS(FOVEA_DECLARE_OPDEF)
#undef FOVEA_DECLARE_OPDEF
}  // namespace ops

}  // namespace fovea
